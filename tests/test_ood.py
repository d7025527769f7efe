"""cifar_lib.ood: the "none of these" scores, their metrics, and the fitted detector."""
from __future__ import annotations

import json

import pytest
import torch

from cifar_lib import ood
from cifar_lib.checkpoint import CheckpointError, load_run, save_checkpoint
from cifar_lib.inference import predict_logits
from cifar_lib.data import CLASSES
from cifar_lib.photos import predict, sample_images
from cifar_lib.models import build_model


def test_auroc_perfect_reversed_random_and_ties():
    known, unknown = torch.arange(10.0, 20.0), torch.arange(0.0, 10.0)
    assert ood.auroc(known, unknown) == 1.0
    assert ood.auroc(unknown, known) == 0.0
    assert ood.auroc(torch.ones(5), torch.ones(7)) == 0.5      # all tied: chance
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4000, generator=g), torch.randn(4000, generator=g)
    assert ood.auroc(a, b) == pytest.approx(0.5, abs=0.03)
    # one unknown between known scores: above 2 of 4 known, tied with one → (1 + 0.5) / 4
    assert ood.auroc([1.0, 2.0, 3.0, 4.0], [2.0]) == pytest.approx(2.5 / 4)


def test_auroc_equals_pairwise_definition():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randint(0, 5, (50,), generator=g).float(), torch.randint(0, 5, (30,), generator=g).float()
    pairs = (a[:, None] > b[None]).float() + 0.5 * (a[:, None] == b[None]).float()
    assert ood.auroc(a, b) == pytest.approx(pairs.mean().item())


def test_threshold_and_fpr_at_95_tpr():
    known = torch.arange(100.0)            # 0..99: keeping 95 of them needs threshold 5
    assert ood.threshold_at_tpr(known, 0.95) == 5.0
    assert (known >= 5.0).float().mean() == 0.95
    unknown = torch.tensor([0.0, 4.0, 5.0, 50.0])  # two at or above the threshold
    assert ood.fpr_at_tpr(known, unknown, 0.95) == 0.5
    assert ood.fpr_at_tpr(known, torch.tensor([-1.0]), 0.95) == 0.0
    with pytest.raises(ValueError):
        ood.threshold_at_tpr(known, 0.0)
    with pytest.raises(ValueError):
        ood.auroc(torch.tensor([]), unknown)


def test_msp_and_energy_on_constructed_logits():
    logits = torch.tensor([[10.0, 0.0, 0.0], [1.0, 1.0, 1.0], [20.0, 20.0, 20.0]])
    m = ood.msp(logits)
    assert m[0] > 0.99 and m[1] == pytest.approx(1 / 3) and m[2] == pytest.approx(1 / 3)
    e = ood.energy(logits)
    assert e[1] == pytest.approx(1 + torch.log(torch.tensor(3.0)).item())
    # same softmax, larger logits: MSP cannot tell them apart, energy can
    assert e[2] - e[1] == pytest.approx(19.0)
    assert ood.energy(logits, temperature=2.0)[1] == pytest.approx(2 * (0.5 + torch.log(torch.tensor(3.0)).item()))


def test_feature_scores_rank_far_features_low():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(4) * 5
    labels = torch.arange(4).repeat(100)
    features = centres[labels] + 0.3 * torch.randn(400, 4, generator=g)
    state = ood.fit_state(features, labels, 4, bank_size=200)
    near = centres[[0, 1, 2]] + 0.1
    far = torch.tensor([[1.0, 1.0, 1.0, 1.0], [-3.0, 2.0, 0.0, 0.0]])   # between / away from the classes
    scores = ood.all_scores(torch.zeros(5, 4), torch.cat([near, far]), state, k=3)
    for name in ("mahalanobis", "knn"):
        s = scores[name]
        assert s[:3].min() > s[3:].max(), name
    # both look at the features' direction only: scaling an image's features changes nothing
    assert torch.allclose(ood.knn(3 * near, state["bank"], 3), scores["knn"][:3], atol=1e-3)


def _tiny_run(tmp_path):
    torch.manual_seed(0)
    model = build_model("simple_cnn")
    save_checkpoint(tmp_path / "checkpoint.pt", model, model_name="simple_cnn", model_kwargs={},
                    classes=CLASSES, mean=(0.5,) * 3, std=(0.5,) * 3)
    return tmp_path


def test_detector_fit_threshold_save_load_and_predict(tmp_path):
    run = _tiny_run(tmp_path)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (120, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.arange(10).repeat(12)
    val = torch.randint(0, 256, (40, 3, 32, 32), generator=g, dtype=torch.uint8)
    det = ood.fit_detector(run, images, labels, val, score="mahalanobis", tpr=0.9)
    # the threshold keeps (at least) 90% of the validation images, and no more than needed
    val_scores = det.score_images(run, val)
    assert (val_scores >= det.threshold).float().mean() >= 0.9
    assert (val_scores > det.threshold).float().mean() < 0.9
    assert det.info["validation_tpr"] >= 0.9 and set(det.state) == {"means", "precision"}

    at = torch.tensor([det.threshold, det.threshold - 1e-3])
    assert det.unknown(at).tolist() == [False, True]  # at the threshold still known
    det.save(run)
    back = ood.Detector.load(run)
    assert (back.score, back.threshold, back.tpr) == (det.score, det.threshold, det.tpr)
    assert torch.equal(back.state["precision"], det.state["precision"])
    assert torch.equal(back.score_images(run, val), val_scores)

    p = predict(run, sample_images()[0])
    assert isinstance(p.none_of_these, bool) and p.ood_score is not None
    assert p.none_of_these == (p.ood_score < det.threshold)
    assert ("(none of these?)" in p.summary()) == p.none_of_these

    # logit scores need no tensors: JSON only, and a stale ood.pt is removed
    ood.Detector("energy", 1.0, 0.95).save(run)
    assert not (run / ood.OOD_TENSORS).exists() and ood.Detector.load(run).state == {}
    det.save(run)

    # a detector fitted for other weights is refused, naming the fix
    meta = json.loads((run / ood.OOD_JSON).read_text())
    meta["info"]["checkpoint_sha256"] = "0" * 64
    (run / ood.OOD_JSON).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="ood.fit_run"):
        predict(run, sample_images()[0])


def test_the_detector_does_not_read_the_calibration(tmp_path):
    # no score uses the temperature, so a stale calibration.json (its own error, naming
    # calibrate, for calibrated probabilities) does not stop open-set scoring
    run = _tiny_run(tmp_path)
    (run / "calibration.json").write_text('{"temperature": 1.5, "checkpoint_sha256": "abc"}')
    images = torch.randint(0, 256, (20, 3, 32, 32), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    det = ood.fit_detector(run, images, torch.arange(10).repeat(2), images, score="energy")
    det.save(run)
    assert ood.detector_for(run).threshold == det.threshold
    p = predict(run, sample_images()[0], calibrated=False)
    assert p.ood_score is not None and p.none_of_these == (p.ood_score < det.threshold)


def test_no_detector_leaves_predictions_alone(tmp_path):
    p = predict(_tiny_run(tmp_path), sample_images()[0])
    assert p.none_of_these is None and p.ood_score is None
    assert "none of these" not in p.summary()


def test_unknown_score_and_unreadable_detector(tmp_path):
    with pytest.raises(ValueError, match="unknown score"):
        ood.Detector("softmax", 0.5)
    (tmp_path / ood.OOD_JSON).write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable detector"):
        ood.Detector.load(tmp_path)


def test_open_set_helpers():
    from cifar_lib.bench.open_set import known_split, synthetic, unknown_images
    from cifar_lib.data import CifarSplit
    labels = torch.tensor([0, 7, 3, 9, 3, 1])
    split = CifarSplit(torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1).expand(6, 3, 32, 32),
                       labels)
    k = known_split(split, (3, 0))
    assert k.labels.tolist() == [1, 0, 0] and k.classes == ("cat", "airplane")
    assert k.images[:, 0, 0, 0].tolist() == [0, 2, 4]
    assert unknown_images(split, (3, 0))[:, 0, 0, 0].tolist() == [1, 3, 5]
    s = synthetic(4)
    assert {n: v.shape for n, v in s.items()} == {n: (4, 3, 32, 32) for n in s}
    assert (s["flat colour"].amax((2, 3)) == s["flat colour"].amin((2, 3))).all()


def test_fit_run_chooses_the_threshold_on_the_run_s_validation_split(synthetic_root, tmp_path):
    from cifar_lib.data import load_cifar10, split_validation, validation_size
    from cifar_lib.recipes import configure
    from cifar_lib.train import fit
    train, test = load_cifar10(synthetic_root)
    cfg = configure("original", quick=True, device="cpu")
    fit(cfg, train, test, run_dir=tmp_path / "run", progress=False)
    det = ood.fit_run(tmp_path / "run", train, score="energy", tpr=0.9)
    validation = split_validation(train, validation_size(len(train), cfg.val_fraction))[1]
    lm = load_run(tmp_path / "run")
    logits = predict_logits(lm.model, validation.images, lm.mean, lm.std)
    assert det.threshold == pytest.approx(ood.threshold_at_tpr(ood.energy(logits), 0.9),
                                          rel=1e-5)
    assert ood.Detector.load(tmp_path / "run").threshold == det.threshold
    fit(cfg.replace(seed=1), train, test, run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / ood.OOD_JSON).exists()  # training again removes it
