// labservice dashboard: the pages work without this file. It only stops a second submit of an upload
// while the first is still being interpreted, and says so on the button.
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (form.id !== "upload-form") { return; }
  var button = form.querySelector("#upload-button");
  if (button) {
    button.disabled = true;
    button.textContent = "Uploading and interpreting…";
  }
});

// Coming back to the page (back button) shows the form ready again.
window.addEventListener("pageshow", function () {
  var button = document.getElementById("upload-button");
  if (button) {
    button.disabled = false;
    button.textContent = "Upload and interpret";
  }
});
