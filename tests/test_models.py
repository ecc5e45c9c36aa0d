"""Video ViT encoder, 3D sin-cos position embeddings and the masked predictor, on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch

import jepa.models.blocks as blocks_mod
from jepa.models.pos_embed import apply_rope, grid_coords, rope_3d, sincos_3d
from jepa.models.predictor import MaskedPredictor, default_predictor_size
from jepa.models.vit import PRESETS, VideoViT

BIG = {"vit_large", "vit_huge", "vit_giant"}
TINY = dict(patch_size=4, tubelet_size=2, input_size=(4, 8, 8))  # token grid (2, 2, 2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_encoder(**kw) -> VideoViT:
    cfg = dict(embed_dim=48, depth=2, num_heads=4, patch_size=4, tubelet_size=2, input_size=(4, 16, 16))
    cfg.update(kw)
    return VideoViT(**cfg).eval()


# ----------------------------------------------------------------------------- reference sincos


def ref_sincos_1d(dim: int, pos: float) -> list[float]:
    """MAE / "Attention is all you need": [sin(pos / 10000^(2i/d)) for i < d/2] ++ [cos(...)]."""
    half = dim // 2
    angles = [pos / 10000.0 ** (2.0 * i / dim) for i in range(half)]
    return [math.sin(a) for a in angles] + [math.cos(a) for a in angles]


def ref_sincos_3d(dim: int, grid, train_grid=None) -> torch.Tensor:
    """Tokens t-major; a third of the (even-rounded) width per axis (t, h, w); the rest zero.

    Positions of a grid that differs from the training grid are evaluated at the training
    grid's fractional coordinates i * train / size.
    """
    train_grid = train_grid or grid
    part = 2 * (dim // 6)
    t, h, w = grid
    st, sh, sw = (tr / g for tr, g in zip(train_grid, grid, strict=True))
    rows = []
    for it in range(t):
        for ih in range(h):
            for iw in range(w):
                row = ref_sincos_1d(part, it * st) + ref_sincos_1d(part, ih * sh) + ref_sincos_1d(part, iw * sw)
                rows.append(row + [0.0] * (dim - len(row)))
    return torch.tensor(rows, dtype=torch.float64)


# ----------------------------------------------------------------------------- presets


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_builds_with_right_shape(name: str) -> None:
    dim, depth, heads, mlp_ratio = PRESETS[name]
    kw = dict(TINY)
    kw["depth"] = 1 if name in BIG else min(depth, 2)  # preset widths and heads, few blocks
    enc = VideoViT.from_preset(name, **kw).eval()
    assert enc.embed_dim == dim and len(enc.blocks.blocks) == kw["depth"]
    blk = enc.blocks.blocks[0]
    assert blk.attn.num_heads == heads
    assert blk.mlp.fc1.out_features == int(dim * mlp_ratio)
    video = torch.randn(2, 3, 4, 8, 8)
    with torch.no_grad():
        out = enc(video)
    assert out.shape == (2, 2 * 2 * 2, dim)
    assert torch.isfinite(out).all()


def expected_params(dim: int, depth: int, hidden: int, patch: int = 16, tubelet: int = 2) -> int:
    """Tubelet conv + depth x (qkv, proj, fc1, fc2, two LayerNorms) + final LayerNorm."""
    patch_embed = 3 * tubelet * patch * patch * dim + dim
    attn = (3 * dim * dim + 3 * dim) + (dim * dim + dim)
    mlp = (dim * hidden + hidden) + (hidden * dim + dim)
    return patch_embed + depth * (attn + mlp + 4 * dim) + 2 * dim


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_full_depth_on_meta_device(name: str) -> None:
    """Full-size presets built without memory: depth and parameter count as specified."""
    dim, depth, heads, mlp_ratio = PRESETS[name]
    with torch.device("meta"):
        enc = VideoViT.from_preset(name, drop_path_rate=0.1)
    assert enc.norm.weight.is_meta
    assert len(enc.blocks.blocks) == depth and enc.blocks.blocks[0].attn.num_heads == heads
    n = sum(p.numel() for p in enc.parameters())
    assert n == expected_params(dim, depth, int(dim * mlp_ratio))


def test_preset_sizes_match_timm() -> None:
    """timm ViT widths / depths / heads; ViT-g/14's MLP is 6144 wide (48/11 x 1408)."""
    assert PRESETS["vit_tiny"][:3] == (192, 12, 3)
    assert PRESETS["vit_small"][:3] == (384, 12, 6)
    assert PRESETS["vit_base"][:3] == (768, 12, 12)
    assert PRESETS["vit_large"][:3] == (1024, 24, 16)
    assert PRESETS["vit_huge"][:3] == (1280, 32, 16)
    assert PRESETS["vit_giant"][:3] == (1408, 40, 16)
    assert int(1408 * PRESETS["vit_giant"][3]) == 6144


def test_unknown_preset_raises() -> None:
    with pytest.raises(ValueError, match="vit_nope"):
        VideoViT.from_preset("vit_nope")


def test_conv_stem_same_shapes() -> None:
    plain = tiny_encoder()
    stem = tiny_encoder(conv_stem=True)
    assert isinstance(stem.patch_embed.proj, torch.nn.Sequential)
    video = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        a, b = plain(video), stem(video)
        tok = stem.patch_embed(video)
    assert a.shape == b.shape == (2, 2 * 4 * 4, 48)
    assert tok.shape == (2, 32, 48)
    assert torch.isfinite(b).all()
    with pytest.raises(ValueError, match="power-of-two"):
        tiny_encoder(conv_stem=True, patch_size=6, input_size=(4, 12, 12))


@pytest.mark.parametrize(
    "size, needle",
    [((4, 10, 16), "H=10"), ((4, 16, 18), "W=18"), ((3, 16, 16), "T=3")],
)
def test_non_divisible_input_raises(size, needle) -> None:
    enc = tiny_encoder()
    with pytest.raises(ValueError, match=needle) as err:
        enc(torch.randn(1, 3, *size))
    assert "patch_size=4" in str(err.value) and "tubelet_size=2" in str(err.value)


def test_wrong_ndim_raises() -> None:
    with pytest.raises(ValueError, match="B, C, T, H, W"):
        tiny_encoder()(torch.randn(3, 4, 16, 16))


# ----------------------------------------------------------------------------- token selection


@pytest.mark.parametrize("pos", ["sincos", "rope"])
def test_token_ids_all_equals_full(pos: str) -> None:
    enc = tiny_encoder(pos_encoding=pos)
    video = torch.randn(2, 3, 4, 16, 16)
    ids = torch.arange(32).expand(2, -1)
    with torch.no_grad():
        torch.testing.assert_close(enc.forward_features(video, ids), enc.forward_features(video))


@pytest.mark.parametrize("pos", ["sincos", "rope"])
def test_padded_token_ids_match_unpadded_subsets(pos: str) -> None:
    enc = tiny_encoder(pos_encoding=pos)
    video = torch.randn(2, 3, 4, 16, 16)
    g = torch.Generator().manual_seed(1)
    sub0 = torch.randperm(32, generator=g)[:11].sort().values
    sub1 = torch.randperm(32, generator=g)[:5].sort().values
    m = 11
    pad = torch.randint(0, 32, (m - 5,), generator=g)  # padding points at arbitrary real tokens
    ids = torch.stack([sub0, torch.cat([sub1, pad])])
    valid = torch.arange(m)[None, :] < torch.tensor([[11], [5]])
    with torch.no_grad():
        out = enc.forward_features(video, ids, valid)
        ref0 = enc.forward_features(video[:1], sub0[None])
        ref1 = enc.forward_features(video[1:], sub1[None])
        unmasked = enc.forward_features(video, ids)
    assert out.shape == (2, m, 48)
    torch.testing.assert_close(out[0], ref0[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1, :5], ref1[0], atol=1e-5, rtol=1e-5)
    # the check has teeth: without the key-padding mask the real tokens do change
    assert not torch.allclose(unmasked[1, :5], ref1[0], atol=1e-4)


# ----------------------------------------------------------------------------- intermediate layers


@pytest.mark.parametrize("pos", ["sincos", "rope"])
def test_get_intermediate_layers(pos: str) -> None:
    enc = tiny_encoder(depth=3, pos_encoding=pos)
    video = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        outs = enc.get_intermediate_layers(video, n=2)
        full = enc.forward_features(video)
        raw = enc.get_intermediate_layers(video, n=3, norm=False)
        picked = enc.get_intermediate_layers(video, n=[0])
        # manual: block outputs one by one
        x, grid = enc.embed(video)
        rope = enc.rope(grid, None, x.device)
        manual = []
        for blk in enc.blocks.blocks:
            x = blk(x, None, rope)
            manual.append(x)
    assert len(outs) == 2 and len(raw) == 3 and len(picked) == 1
    assert all(o.shape == (2, 32, 48) for o in outs)
    torch.testing.assert_close(outs[-1], full)
    for got, want in zip(raw, manual, strict=True):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(outs[0], enc.norm(manual[1]))
    torch.testing.assert_close(picked[0], enc.norm(manual[0]))


# ----------------------------------------------------------------------------- checkpointing


def test_grad_checkpointing_same_output_and_grads(monkeypatch) -> None:
    enc = tiny_encoder().train()  # checkpointing is only active in training mode
    video = torch.randn(2, 3, 4, 16, 16)

    def run():
        enc.zero_grad(set_to_none=True)
        out = enc(video)
        (out.pow(2).mean() + out.sum() * 1e-3).backward()
        return out.detach(), {k: p.grad.clone() for k, p in enc.named_parameters()}

    out_a, grads_a = run()
    calls = []
    real = blocks_mod.checkpoint

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(blocks_mod, "checkpoint", spy)
    enc.set_grad_checkpointing(True)
    out_b, grads_b = run()
    assert len(calls) == len(enc.blocks.blocks)  # really went through checkpoint
    torch.testing.assert_close(out_a, out_b)
    assert grads_a.keys() == grads_b.keys()
    for k in grads_a:
        torch.testing.assert_close(grads_a[k], grads_b[k], atol=1e-6, rtol=1e-5, msg=k)
    calls.clear()
    enc.set_grad_checkpointing(False)
    run()
    assert not calls


def test_no_weight_decay() -> None:
    enc = tiny_encoder()
    names = dict(enc.named_parameters())
    skip = enc.no_weight_decay()
    assert isinstance(skip, set) and skip <= names.keys()
    pred = MaskedPredictor(48, (2, 4, 4), 32, 1, 2)
    pskip = pred.no_weight_decay()
    assert "mask_token" in pskip and pskip <= dict(pred.named_parameters()).keys()


# ----------------------------------------------------------------------------- position embeddings


@pytest.mark.parametrize("dim", [48, 50, 192])
def test_sincos_3d_matches_reference(dim: int) -> None:
    grid = (2, 3, 4)
    got = sincos_3d(dim, grid)
    assert got.shape == (24, dim) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref_sincos_3d(dim, grid), atol=1e-6, rtol=0)


def test_sincos_interpolation() -> None:
    dim, train = 48, (2, 3, 4)
    table = sincos_3d(dim, train)
    torch.testing.assert_close(sincos_3d(dim, train, train_grid=train), table)
    big = sincos_3d(dim, (4, 6, 8), train_grid=train)
    assert big.shape == (4 * 6 * 8, dim)
    even = big.reshape(4, 6, 8, dim)[::2, ::2, ::2].reshape(-1, dim)
    torch.testing.assert_close(even, table)
    torch.testing.assert_close(big.double(), ref_sincos_3d(dim, (4, 6, 8), train), atol=1e-6, rtol=0)
    # odd indices fall in between: not equal to any neighbour
    odd = big.reshape(4, 6, 8, dim)[1, 1, 1]
    assert not torch.allclose(odd, table.reshape(2, 3, 4, dim)[0, 0, 0])


def test_encoder_adds_positions_and_runs_on_other_grid() -> None:
    enc = tiny_encoder()  # trained grid (2, 4, 4)
    video = torch.randn(1, 3, 4, 16, 16)
    with torch.no_grad():
        x, grid = enc.embed(video)
        torch.testing.assert_close(x - enc.patch_embed(video), sincos_3d(48, (2, 4, 4))[None])
        other = torch.randn(2, 3, 8, 24, 20)  # grid (4, 6, 5)
        x2, grid2 = enc.embed(other)
        out = enc(other)
    assert grid == (2, 4, 4) and grid2 == (4, 6, 5)
    want = ref_sincos_3d(48, (4, 6, 5), (2, 4, 4)).float()
    torch.testing.assert_close(x2 - enc.patch_embed(other), want.expand(2, -1, -1), atol=1e-5, rtol=0)
    assert out.shape == (2, 4 * 6 * 5, 48) and torch.isfinite(out).all()


# ----------------------------------------------------------------------------- predictor


def make_predictor(pos: str = "sincos") -> MaskedPredictor:
    return MaskedPredictor(
        embed_dim=48, grid_size=(2, 4, 4), predictor_embed_dim=32, depth=2, num_heads=2, pos_encoding=pos
    ).eval()


@pytest.mark.parametrize("pos", ["sincos", "rope"])
def test_predictor_shape(pos: str) -> None:
    pred = make_predictor(pos)
    ctx = torch.randn(3, 7, 48)
    cids = torch.randint(0, 32, (3, 7))
    tids = torch.randint(0, 32, (3, 5))
    with torch.no_grad():
        out = pred(ctx, cids, tids, (2, 4, 4))
    assert out.shape == (3, 5, 48)
    with torch.no_grad():  # another grid (interpolated positions) works too
        out2 = pred(ctx, cids, torch.randint(0, 96, (3, 4)), (4, 4, 6))
    assert out2.shape == (3, 4, 48)


@pytest.mark.parametrize("pos", ["sincos", "rope"])
def test_predictor_padding_does_not_change_valid_outputs(pos: str) -> None:
    pred = make_predictor(pos)
    g = torch.Generator().manual_seed(3)
    perm0, perm1 = torch.randperm(32, generator=g), torch.randperm(32, generator=g)
    c0, t0 = perm0[:9], perm0[9:16]  # clip 0: 9 context, 7 targets
    c1, t1 = perm1[:4], perm1[4:7]  # clip 1: 4 context, 3 targets
    ctx0, ctx1 = torch.randn(1, 9, 48, generator=g), torch.randn(1, 4, 48, generator=g)
    ctx = torch.cat([ctx0, torch.cat([ctx1, 50 * torch.randn(1, 5, 48, generator=g)], 1)])
    cids = torch.stack([c0, torch.cat([c1, torch.randint(0, 32, (5,), generator=g)])])
    tids = torch.stack([t0, torch.cat([t1, torch.randint(0, 32, (4,), generator=g)])])
    cmask = torch.arange(9)[None] < torch.tensor([[9], [4]])
    tmask = torch.arange(7)[None] < torch.tensor([[7], [3]])
    grid = (2, 4, 4)
    with torch.no_grad():
        out = pred(ctx, cids, tids, grid, cmask, tmask)
        ref0 = pred(ctx0, c0[None], t0[None], grid)
        ref1 = pred(ctx1, c1[None], t1[None], grid)
        no_mask = pred(ctx, cids, tids, grid)
    assert out.shape == (2, 7, 48)
    torch.testing.assert_close(out[0], ref0[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1, :3], ref1[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(no_mask[1, :3], ref1[0], atol=1e-4)
    # only one of the two masks given: the other side counts as all real
    with torch.no_grad():
        out_c = pred(ctx[1:], cids[1:], t1[None], grid, context_mask=cmask[1:])
    torch.testing.assert_close(out_c[0], ref1[0], atol=1e-5, rtol=1e-5)


def test_default_predictor_size() -> None:
    assert default_predictor_size(1024, 24) == (384, 12, 12)  # V-JEPA's ViT-L predictor
    for dim, depth in [(96, 4), (192, 12), (384, 12), (768, 12), (1280, 32)]:
        width, pdepth, heads = default_predictor_size(dim, depth)
        assert 64 <= width <= 384 and 2 <= pdepth <= 12 and width % heads == 0


# ----------------------------------------------------------------------------- rotary positions


def ref_rope(x: torch.Tensor, coords: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """RoFormer's rotation, written out per channel pair: per axis a, a part of width 2m whose
    pair (j, j + m) turns by coords[a] * base^(-j/m) (theta_j = base^(-2j/d_axis)); the rest stays."""
    n, d = x.shape
    part = 2 * (d // 6)
    m = part // 2
    out = x.clone().double()
    for row in range(n):
        for a in range(3):
            for j in range(m):
                theta = float(coords[row, a]) * base ** (-j / m)
                i0, i1 = a * part + j, a * part + j + m
                x0, x1 = float(x[row, i0]), float(x[row, i1])
                out[row, i0] = x0 * math.cos(theta) - x1 * math.sin(theta)
                out[row, i1] = x0 * math.sin(theta) + x1 * math.cos(theta)
    return out


@pytest.mark.parametrize("head_dim", [16, 32, 64])
def test_rope_matches_reference(head_dim: int) -> None:
    coords = grid_coords((2, 3, 4))
    assert coords.shape == (24, 3) and coords[5].tolist() == [0.0, 1.0, 1.0]
    x = torch.randn(24, head_dim)
    cos, sin = rope_3d(coords, head_dim)
    torch.testing.assert_close(apply_rope(x, cos, sin).double(), ref_rope(x, coords), atol=1e-5, rtol=0)


def test_rope_scores_depend_on_relative_offsets_only() -> None:
    q, k = torch.randn(10, 32), torch.randn(10, 32)
    coords = torch.randint(0, 6, (10, 3)).float()

    def scores(c: torch.Tensor) -> torch.Tensor:
        cos, sin = rope_3d(c, 32)
        return apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).T

    base = scores(coords)
    torch.testing.assert_close(scores(coords + torch.tensor([3.0, -2.0, 5.0])), base, atol=1e-4, rtol=1e-4)
    moved = coords.clone()
    moved[0] += torch.tensor([0.0, 1.0, 0.0])  # one token moves: its offsets to the others change
    assert not torch.allclose(scores(moved), base, atol=1e-3)


def test_rope_encoder_features_follow_content_not_absolute_position() -> None:
    enc = tiny_encoder(pos_encoding="rope")
    video = torch.randn(1, 3, 4, 16, 16)
    with torch.no_grad():
        for blk in enc.blocks.blocks:  # sharper attention than at init, so positions matter visibly
            blk.attn.qkv.weight.mul_(20)
        x, grid = enc.embed(video)  # grid (2, 4, 4); rope adds nothing to the tokens
        torch.testing.assert_close(x, enc.patch_embed(video))
        ids = torch.tensor([[t * 16 + h * 4 + w for t in range(2) for h in range(2) for w in range(2)]])
        tokens = x[:, :8]  # any 8 token contents, placed on a 2x2x2 block of the grid
        here = enc.forward_tokens(tokens, None, ids, grid)
        there = enc.forward_tokens(tokens, None, ids + 4 * 2 + 2, grid)  # same block, 2 rows down, 2 right
        scrambled = enc.forward_tokens(tokens, None, ids.flip(1), grid)
    torch.testing.assert_close(there, here, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(scrambled, here, atol=1e-3)
    with pytest.raises(ValueError, match="token grid"):
        enc.forward_tokens(tokens, None, ids)


def test_unknown_pos_encoding_raises() -> None:
    with pytest.raises(ValueError, match="pos_encoding 'alibi'"):
        tiny_encoder(pos_encoding="alibi")
    with pytest.raises(ValueError, match="pos_encoding 'alibi'"):
        MaskedPredictor(48, (2, 4, 4), 32, 1, 2, pos_encoding="alibi")


def test_single_token_attention_fast_path_matches_full_attention() -> None:
    import torch.nn.functional as F

    from jepa.models.blocks import Attention

    torch.manual_seed(0)
    attn = Attention(16, 2)
    x = torch.randn(3, 1, 16)
    q, k, v = attn.qkv(x).reshape(3, 1, 3, 2, 8).permute(2, 0, 3, 1, 4).unbind(0)
    ref = attn.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(3, 1, 16))
    torch.testing.assert_close(attn(x), ref)
