"""A report's random draws are made per image (attacks/row_streams.py): the same verdicts at any batch size, so a
baseline measured on another machine (another batch) is compared image by image on the attacks, not on their luck."""
import torch

import harden
from harden.attacks.base import uniform_noise
from harden.attacks.row_streams import RowStreams, row_randint
from harden.report.compare import verdicts_of


def test_an_images_draws_do_not_depend_on_its_batch():
    cpu = torch.device("cpu")
    whole = RowStreams(7, torch.arange(10, 16), batch_seed=17)
    noise = uniform_noise((6, 1, 4, 4), whole, cpu)
    again = uniform_noise((6, 1, 4, 4), whole, cpu)  # an image's second draw is another
    assert not torch.equal(noise, again)
    part = RowStreams(7, torch.arange(12, 20), batch_seed=19)  # images 12-15 in another batch, at other rows
    assert torch.equal(uniform_noise((8, 1, 4, 4), part, cpu)[:4], noise[2:])
    sub = RowStreams(7, torch.arange(10, 16), batch_seed=3).subset(torch.tensor([4, 1]))  # an attack's active rows
    assert torch.equal(uniform_noise((2, 1, 4, 4), sub, cpu), noise[[4, 1]])
    targets = row_randint(RowStreams(7, torch.arange(0, 6), 0), 1, 10, 6, cpu)
    assert torch.equal(row_randint(RowStreams(7, torch.arange(3, 6), 5), 1, 10, 3, cpu), targets[3:])
    assert isinstance(whole, torch.Generator)  # draws made per batch (Square's seed) still take it


def test_the_report_gives_the_same_verdicts_at_any_batch_size(digits_model):
    """Random starts (PGD with restarts, AutoPGD), JSMA's random targets, Square's starting stripes (its squares
    drawn per iteration from the report's seed) and AutoAttack's stages: the same bits at batches of 64 and 17
    (JSMA's robust accuracy moved by 9 points on 100 images before)."""
    x = torch.rand(48, 1, 8, 8)
    with torch.no_grad():
        y = digits_model(x).argmax(1)
    kw = dict(attacks=["pgd:restarts=2,steps=5", "autopgd:steps=10", "jsma", "square:queries=100",
                       "autoattack:steps=10,queries=100,fab_steps=10"], eps=0.1, metrics=False, masking_checks=False,
              device="cpu", n=48)
    ra, rb = (harden.evaluate(digits_model, (x, y), batch_size=bs, **kw) for bs in (64, 17))
    a, b = verdicts_of(ra), verdicts_of(rb)
    assert a["bits"] == b["bits"] and set(a["bits"]) >= {"pgd", "autopgd", "jsma", "square", "autoattack"}
    assert (ra.to_dict()["batch_size"], rb.to_dict()["batch_size"]) == (64, 17)  # kept in the JSON, for L2 Square
