"""DINO loss (Caron et al. 2021, arXiv:2104.14294): cross-entropy between a centred, sharpened teacher
and the student over every pair of distinct views."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.core.losses.base import LOSSES, LossOut, Views, check_temperature, cross_view_report


@LOSSES.register("dino", method="dino")
class DINOLoss(nn.Module):
    """Self-distillation: the student's softmax on every view matches the teacher's on the other global view,

        P_a = softmax((t_a - c) / tau_t)   (teacher, global views a = 1, 2; no gradient),
        L = mean over pairs (a, v), v != a, of  mean_i  - sum_k P_a[i, k] log softmax(s_v / tau_s)[i, k],

    over the student views v = the two global views (p1, p2) and the local crops. The centre c and the
    scheduled teacher temperature tau_t come from the method (``views.center``, ``views.teacher_temp``; 0 and
    ``teacher_temp`` when absent); so do the momentum teacher, the prototypes and multi-crop (methods/dino.py).
    Shapes: p1, p2, t1, t2 (N, K), crops L x (N, K), center (1, K) -> scalar. Terms: teacher_entropy (mean entropy
    of P_a in nats: log K when the teacher collapses to uniform, 0 when it collapses to one prototype) and teacher_temp.

    student_temp: tau_s of the student's softmax, in [0.001, 10].
    teacher_temp: tau_t of the teacher's softmax (after the method's warm-up), in [0.001, 10] (lower = sharper targets).
    """

    term_names = ("teacher_entropy", "teacher_temp")
    needs = ("p", "t")

    def __init__(self, student_temp: float = 0.1, teacher_temp: float = 0.04):
        super().__init__()
        check_temperature(student_temp)
        if not 1e-3 <= teacher_temp <= 10:
            raise ValueError(f"teacher_temp must be in [0.001, 10], got {teacher_temp}")
        self.student_temp, self.teacher_temp = student_temp, teacher_temp

    def forward(self, views: Views, report: bool = False) -> LossOut:
        if views.p1 is None or views.t1 is None:
            raise ValueError("DINO needs student prototype logits (views.p1, p2) and teacher logits (views.t1, t2)")
        tau_t = views.teacher_temp or self.teacher_temp
        center = views.center.float() if views.center is not None else 0.0
        teacher = [F.softmax((t.detach().float() - center) / tau_t, dim=1) for t in (views.t1, views.t2)]
        students = [F.log_softmax(s.float() / self.student_temp, dim=1) for s in (views.p1, views.p2, *views.crops)]
        per, pairs = 0.0, 0
        for a, q in enumerate(teacher):
            for v, logp in enumerate(students):
                if v != a:
                    per = per + -(q * logp).sum(1)
                    pairs += 1
        per = per / pairs  # (N,) each image's loss, averaged over its view pairs
        with torch.no_grad():
            q = torch.cat(teacher)
            entropy = -(q * q.clamp_min(1e-30).log()).sum(1).mean()
        out = LossOut(per.mean(), {"teacher_entropy": entropy, "teacher_temp": torch.tensor(float(tau_t))})
        return cross_view_report(out, views.z1, views.z2, per) if report else out

