"""DINO loss (Caron et al. 2021, arXiv:2104.14294): cross-entropy between a centred, sharpened teacher
and the student over every pair of distinct views."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.core.losses.base import LossOut, Views, check_temperature, cross_view_report


class DINOLoss(nn.Module):
    """Self-distillation: the student's softmax on every view matches the teacher's on the other global view,

        P_a = softmax((t_a - c) / tau_t)   (teacher, global views a = 1, 2; no gradient),
        L = mean over pairs (a, v), v != a, of  mean_i  - sum_k P_a[i, k] log softmax(s_v / tau_s)[i, k],

    over the student views v = the two global views (p1, p2) and the local crops. The centre c and the
    teacher temperature tau_t come from the method (``views.center``, ``views.teacher_temp``; 0 and
    ``teacher_temp`` when absent); so do the momentum teacher and multi-crop (see methods/dino.py, whose
    settings are declared and checked here with the loss's own). Shapes: p1, p2, t1, t2 (N, K), crops
    L x (N, K), center (1, K) -> scalar. Terms: teacher_entropy (mean entropy of P_a in nats: log K when the
    teacher collapses to uniform, 0 when it collapses to one prototype) and teacher_temp.

    student_temp: tau_s of the student's softmax, in [0.001, 10].
    teacher_temp: tau_t of the teacher's softmax after its warm-up, in [0.001, 10] (lower = sharper targets).
    warmup_teacher_temp: tau_t at the start, raised linearly to teacher_temp, in [0.001, 10].
    warmup_teacher_temp_frac: share of the training (0..1) over which tau_t rises; 0 = no warm-up.
    out_dim: K, the number of prototypes of the DINO head's last layer (2..65536).
    momentum: the teacher's EMA momentum at the start, raised to 1 on a cosine schedule, in [0, 1).
    center_momentum: EMA momentum of the centre c of the teacher's outputs, in [0, 1).
    local_crops: small crops per image fed to the student only (0..10; multi-crop).
    local_scale: area fraction range [min, max] of the local crops, within (0, 1].
    """

    term_names = ("teacher_entropy", "teacher_temp")

    def __init__(self, student_temp: float = 0.1, teacher_temp: float = 0.04, warmup_teacher_temp: float = 0.04,
                 warmup_teacher_temp_frac: float = 0.0, out_dim: int = 1024, momentum: float = 0.996,
                 center_momentum: float = 0.9, local_crops: int = 2, local_scale: tuple = (0.05, 0.4)):
        super().__init__()
        check_temperature(student_temp)
        for name, t in (("teacher_temp", teacher_temp), ("warmup_teacher_temp", warmup_teacher_temp)):
            _check(1e-3 <= t <= 10, f"{name} must be in [0.001, 10], got {t}")
        _check(0 <= warmup_teacher_temp_frac <= 1, f"warmup_teacher_temp_frac must be in [0, 1], got {warmup_teacher_temp_frac}")
        _check(2 <= out_dim <= 65536, f"out_dim must be in 2..65536, got {out_dim}")
        _check(0 <= momentum < 1, f"momentum must be in [0, 1), got {momentum}")
        _check(0 <= center_momentum < 1, f"center_momentum must be in [0, 1), got {center_momentum}")
        _check(0 <= local_crops <= 10, f"local_crops must be in 0..10, got {local_crops}")
        _check(len(local_scale) == 2 and 0 < local_scale[0] <= local_scale[1] <= 1,
               f"local_scale must be two numbers in (0, 1] with min <= max, got {list(local_scale)}")
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


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)
