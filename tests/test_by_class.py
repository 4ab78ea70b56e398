"""Robust accuracy by class: counts and accuracies per class, and which classes are named as weakest (only those
with enough images to rank)."""
import torch

from harden.report.by_class import MIN_RANKED, by_class, ranked, weakest_line


def test_rows_ranking_and_the_line():
    # class 0: 30 images, 24 correct, 6 robust to both attacks; class 2: 25 images, all correct, 20 robust to both;
    # class 5: 3 images (too few to rank); no image of classes 1, 3, 4
    y = torch.tensor([0] * 30 + [2] * 25 + [5] * 3)
    correct = torch.tensor([True] * 24 + [False] * 6 + [True] * 25 + [True, True, False])
    a = torch.tensor([True] * 10 + [False] * 20 + [True] * 22 + [False] * 3 + [True, False, False])
    b = torch.tensor([True] * 6 + [False] * 24 + [True] * 20 + [False] * 5 + [True, True, False])
    names = ["cat", "dog", "stop sign", "fox", "owl", "yield"]
    rows = by_class(y, correct, {"fgsm": a, "pgd": b}, names)
    assert [(r["index"], r["name"], r["n"]) for r in rows] == [(0, "cat", 30), (2, "stop sign", 25), (5, "yield", 3)]
    assert rows[0]["clean"] == 0.8 and rows[0]["worst"] == 0.2 and rows[0]["attacks"] == {"fgsm": 1 / 3, "pgd": 0.2}
    assert rows[1]["worst"] == 0.8 and rows[2]["worst"] == 1 / 3
    assert [r["name"] for r in ranked(rows)] == ["cat", "stop sign"] and MIN_RANKED > 3
    line = weakest_line(rows)
    assert line.startswith("by class, worst case: weakest cat 20.0% (") and "30 images" in line
    assert "strongest stop sign 80.0%" in line and "2 of 3 classes" in line
    # one class rankable: nothing to compare, no line; no names: the index; no attacks: no worst case
    assert weakest_line(rows[:1] + rows[2:]) is None
    bare = by_class(y, correct, {}, None)
    assert bare[0]["name"] == "0" and bare[0]["worst"] is None and ranked(bare) == []
