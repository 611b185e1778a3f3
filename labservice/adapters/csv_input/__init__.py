"""CSV files → the engine's columnar CBC table, chunk by chunk, with an error per bad row."""
