"""Fidelity to the references: every loss against lightly / pytorch-metric-learning / the official code, every
augmentation against torchvision.transforms.v2 at the parameters it drew. Prints the maximum absolute difference.

    .venv/bin/python benchmarks/fidelity.py

Needs the dev extra (lightly, pytorch-metric-learning). Random inputs: N=32, D=16 (losses); 64 colour 32x32 images.
"""
import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF

import workbench.core.augment as A
from workbench.core.losses import LOSSES, Views


def losses():
    import lightly.loss as LL
    from pytorch_metric_learning import losses as PL, miners, reducers

    g = torch.Generator().manual_seed(0)
    n, d = 32, 16
    z1, z2, p1, p2, t1, t2 = (torch.randn(n, d, generator=g) for _ in range(6))
    labels = torch.randint(0, 4, (n,), generator=g)
    v = Views(z1, z2, p1=p1, p2=p2, t1=t1, t2=t2)
    L = lambda name, **kw: LOSSES.build(name, kw)  # noqa: E731
    ncs = LL.NegativeCosineSimilarity()
    emb, lab = torch.cat([z1, z2]), torch.cat([labels, labels])
    queue = F.normalize(torch.randn(64, d, generator=g), dim=1)  # K past keys, as the MoCo method keeps them
    q, k = F.normalize(torch.cat([z1, z2]), dim=1), F.normalize(torch.cat([t2, t1]), dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], 1) / 0.2
    moco_ref = F.cross_entropy(logits, torch.zeros(2 * n, dtype=torch.long))
    rows = [
        ("ntxent", "lightly NTXentLoss", L("ntxent", temperature=0.5)(Views(z1, z2)).loss, LL.NTXentLoss(temperature=0.5)(z1, z2)),
        ("dcl", "lightly DCLLoss", L("dcl", temperature=0.1)(Views(z1, z2)).loss, LL.DCLLoss(temperature=0.1)(z1, z2)),
        ("dclw", "lightly DCLWLoss", L("dclw", temperature=0.1)(Views(z1, z2)).loss, LL.DCLWLoss(temperature=0.1, sigma=0.5)(z1, z2)),
        ("supcon", "pml SupConLoss", L("supcon", temperature=0.1)(Views(z1, z2, labels=labels)).loss,
         PL.SupConLoss(temperature=0.1)(emb, lab)),
        ("barlow_twins", "lightly BarlowTwinsLoss", L("barlow_twins")(Views(z1, z2)).loss, LL.BarlowTwinsLoss(lambda_param=0.005)(z1, z2)),
        ("vicreg", "lightly VICRegLoss", L("vicreg")(Views(z1, z2)).loss, LL.VICRegLoss()(z1, z2)),
        ("byol", "lightly 0.5*(NCS(p1,t2)+NCS(p2,t1))", L("byol")(v).loss, 0.5 * (ncs(p1, t2) + ncs(p2, t1))),
        ("byol / 4 - 1", "the same, official scale undone", L("byol")(v).loss / 4 - 1, 0.5 * (ncs(p1, t2) + ncs(p2, t1))),
        ("simsiam", "lightly 0.5*(NCS(p1,z2)+NCS(p2,z1))", L("simsiam")(v).loss, 0.5 * (ncs(p1, z2) + ncs(p2, z1))),
        ("moco", "MoCo v2 logits + CE (official)", L("moco", temperature=0.2)(Views(z1, z2, t1=t1, t2=t2, negatives=queue)).loss,
         moco_ref),
        ("triplet batch_hard", "pml BatchHardMiner + TripletMarginLoss",
         L("triplet", margin=0.2, mining="batch_hard", use_labels=True)(Views(z1, z2, labels=labels)).loss,
         PL.TripletMarginLoss(margin=0.2, reducer=reducers.MeanReducer())(emb, lab, miners.BatchHardMiner()(emb, lab))),
        ("triplet batch_all", "pml TripletMarginLoss (avg non-zero)",
         L("triplet", margin=0.2, mining="batch_all", use_labels=True)(Views(z1, z2, labels=labels)).loss,
         PL.TripletMarginLoss(margin=0.2, reducer=reducers.AvgNonZeroReducer())(emb, lab)),
    ]
    for name, ref, ours, theirs in rows:
        print(f"  {name:20s} {ref:40s} |diff| = {abs(float(ours) - float(theirs)):.3g}")
    try:
        tau = L("ntxent", temperature=2.0, learnable_temperature=True).tau
        print(f"  learnable tau start 2.0: accepted, tau = {float(tau()):.3g}")
    except Exception as exc:  # noqa: BLE001
        print(f"  learnable tau start 2.0: rejected ({str(exc)[:60]}...)")


def augmentations():
    g = torch.Generator().manual_seed(0)
    x = F.interpolate(torch.rand(64, 3, 6, 6, generator=g), size=(32, 32), mode="bicubic").clamp(0, 1)
    diffs = {}
    crop = A.RandomResizedCrop(scale=(0.08, 1.0))
    box = crop.params(64, 32, 32, torch.Generator().manual_seed(1), "cpu")
    for size in (16, 32):
        ours = A.resized_crop(x, box, size)
        diffs[f"random_resized_crop -> {size}"] = max(
            float((ours[i] - TF.resized_crop(x[i], *b, [size, size], antialias=True)).abs().max()) for i, b in enumerate(box.tolist()))
    shifts = torch.linspace(-0.5, 0.5, 64)
    ref = torch.stack([TF.adjust_hue(x[i], float(shifts[i])) for i in range(64)])
    diffs["hue (HSV) shift"] = float((A.adjust_hue(x, shifts) - ref).abs().max())
    op = A.ColorJitter(p=1.0, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    prm = op.params(64, torch.Generator().manual_seed(2), "cpu")
    ours, fns = op.apply(x, prm), [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    worst = 0.0
    for i in range(64):
        ref = x[i]
        for k in prm["order"][i].tolist():
            ref = fns[k](ref, float(prm["factors"][i, k]))
        worst = max(worst, float((ours[i] - ref).abs().max()))
    diffs["color_jitter (drawn order)"] = worst
    diffs["grayscale"] = float((A.AUGMENTS.get("grayscale").factory(p=1.0)(x, g) - TF.rgb_to_grayscale(x, 3)).abs().max())
    blur = A.AUGMENTS.get("gaussian_blur").factory(p=1.0, kernel_size=5, sigma=(1.3, 1.3))(x, g)
    diffs["gaussian_blur"] = float((blur - TF.gaussian_blur(x, [5, 5], [1.3, 1.3])).abs().max())
    for k, val in diffs.items():
        print(f"  {k:28s} max |diff| = {val:.3g}")
    n = 20000
    ours = crop.params(n, 32, 32, torch.Generator().manual_seed(3), "cpu").double()
    torch.manual_seed(3)
    tv = T.RandomResizedCrop(32, scale=(0.08, 1.0))
    img = torch.zeros(1, 32, 32)
    ref = torch.tensor([[p["height"], p["width"]] for p in (tv.make_params([img]) for _ in range(n))]).double()
    oa, ra = (ours[:, 2] * ours[:, 3]).mean() / 1024, (ref[:, 0] * ref[:, 1]).mean() / 1024
    olr, rlr = (ours[:, 3] / ours[:, 2]).log().std(), (ref[:, 1] / ref[:, 0]).log().std()
    print(f"  crop scale (0.08, 1.0): mean area {oa:.4f} (torchvision {ra:.4f}), std log aspect {olr:.4f} (torchvision {rlr:.4f})")
    ours = A.RandomResizedCrop(scale=(0.2, 1.0)).params(n, 32, 32, torch.Generator().manual_seed(4), "cpu").double()
    tv = T.RandomResizedCrop(32, scale=(0.2, 1.0))
    ref = torch.tensor([[p["height"], p["width"]] for p in (tv.make_params([img]) for _ in range(n))]).double()
    print(f"  crop scale (0.2, 1.0): mean area {(ours[:, 2] * ours[:, 3]).mean() / 1024:.4f} "
          f"(torchvision {(ref[:, 0] * ref[:, 1]).mean() / 1024:.4f})")


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # --help; no options
    print("losses (N=32, D=16, random inputs):")
    losses()
    print("augmentations (64 colour images 32x32, torchvision.transforms.v2 at the drawn parameters):")
    augmentations()
