"""Rules over a patient's stored history (clinical-rules §3 and §12, v2), pure functions over plain rows.

They run where a CBC is stored with a patient id (labservice.services.store_results), beside the delta checks
of labservice.core.delta, and each takes the CBC being stored and the patient's earlier CBCs as `PastCbc` rows:

- `known_critical.compare`: a critical value of the same analyte in the same direction in the patient's most
  recent CBC before this one, within the delta window, is known (§3 v2): `urgent`, not `immediate`;
- `hit.score_4ts`: the 4Ts fall and timing items over every CBC since heparin started (§12 v2);
- `mcv_delta.compare`: MCV changed by more than 3.0 fL from the previous CBC within 72 hours (§12 v2);
- `answer.with_history`: an answer with what these rules found (findings, urgency and its reasons, `hit_4ts`).

Thresholds come from thresholds.csv, titles, reasons and sources from the `history` rows of findings.csv.
"""

from __future__ import annotations

from labservice.core.history.answer import history_outcome, with_history
from labservice.core.history.points import PastCbc, critical_marks

__all__ = ["PastCbc", "critical_marks", "history_outcome", "with_history"]
