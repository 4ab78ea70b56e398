"""A report's random draws are made per image (attacks/row_streams.py): the same verdicts at any batch size, so a
baseline measured on another machine (another batch) is compared image by image on the attacks, not on their luck."""
import torch

import harden
from harden.attacks.base import uniform_noise
from harden.attacks.row_streams import RowStreams, _mix32, _mul32, hashed_signs, row_randint
from harden.attacks.square import square
from harden.report.compare import draws_note, verdicts_of


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
    assert (ra.to_dict()["batch_size"], rb.to_dict()["batch_size"]) == (64, 17)  # kept in the JSON


def test_l2_square_is_the_same_for_an_image_in_any_batch(digits_model):
    """L2 Square draws a sign vector an image and query (AutoAttack's L2 stage): per image, hashed from its key, the
    same adversarial images to the last digit in one batch of 48 and in batches of 17 (drawn per batch before, 32 and
    30 of them fooled at eps 0.3)."""
    torch.manual_seed(0)
    x = torch.rand(48, 1, 8, 8)
    with torch.no_grad():
        y = digits_model(x).argmax(1)
    whole = square(digits_model, x, y, eps=0.3, norm="2", queries=150, generator=RowStreams(5, torch.arange(48), 1))
    parts = torch.cat([square(digits_model, x[i:i + 17], y[i:i + 17], eps=0.3, norm="2", queries=150,
                              generator=RowStreams(5, torch.arange(i, min(i + 17, 48)), 2 + i)) for i in range(0, 48, 17)])
    assert torch.equal(whole, parts)
    with torch.no_grad():
        fooled = (digits_model(whole).argmax(1) != y).sum()
    assert 10 < fooled < 48 and (whole - x).flatten(1).norm(dim=1).max() <= 0.3 + 1e-5  # attacks, within its budget
    other = square(digits_model, x, y, eps=0.3, norm="2", queries=150, generator=RowStreams(6, torch.arange(48), 1))
    assert not torch.equal(whole, other)  # another seed, other draws


def test_hashed_signs_are_exact_integer_hashes_and_look_random():
    x = torch.randint(0, 2**32, (500,), dtype=torch.long)
    assert [int(v) for v in _mul32(x, 0x846CA68B)] == [int(v) * 0x846CA68B % 2**32 for v in x]  # no int64 overflow

    def mix(v):
        v ^= v >> 16
        v = v * 0x7FEB352D % 2**32
        v ^= v >> 15
        v = v * 0x846CA68B % 2**32
        return v ^ (v >> 16)
    assert [int(v) for v in _mix32(x)] == [mix(int(v)) for v in x]
    keys = torch.randint(0, 2**62, (1000,))
    s = torch.stack([hashed_signs(keys, d, 3) for d in range(100)])  # draws x images x channels
    assert set(s.unique().tolist()) == {-1.0, 1.0} and torch.equal(hashed_signs(keys[7:9], 5, 3), s[5, 7:9])
    for corr in (s.mean(), (s[1:] * s[:-1]).mean(), (s[:, 1:] * s[:, :-1]).mean(), (s[..., 1] * s[..., 0]).mean()):
        assert abs(corr) < 0.02  # balanced, and no pattern across draws, images or channels (3 sd at 3e5 signs: 0.006)
    counting = torch.stack([hashed_signs(torch.arange(1000), d, 3) for d in range(30)])  # keys 0, 1, 2, ...
    assert abs((counting[:, 1:] * counting[:, :-1]).mean()) < 0.03


def test_a_baseline_whose_l2_square_drew_per_batch_is_said_only_where_it_ran():
    l2 = {"attacks": [{"name": "autoattack", "norm": "2"}], "verdicts": {"draws": "per image"}}
    assert "L2 AutoAttack" in draws_note(l2)
    assert draws_note({**l2, "attacks": [{"name": "autoattack", "norm": "inf"}]}) is None
    assert draws_note({**l2, "verdicts": {"draws": "per image, L2 Square too"}}) is None
    assert "per batch" in draws_note({**l2, "verdicts": {"bits": {}}})  # before any draw was made per image
