"""User images and masks -> model inputs: every bad input is an InputError with a readable message."""

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from rdiff import preprocess
from rdiff.preprocess import InputError, open_image, prepare_image, prepare_mask, to_rgb

SIZE = 16


def png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming ``width x height`` with almost no pixel data (cheap to build, never decodable)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = _chunk(b"IDAT", zlib.compress(b"\x00" * 16))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + idat + _chunk(b"IEND", b"")


def _check_image(t: torch.Tensor, size: int = SIZE):
    assert t.shape == (3, size, size) and t.dtype == torch.float32
    assert float(t.min()) >= -1.0 and float(t.max()) <= 1.0


# --------------------------------------------------------------------------------------------------
# images: bad files


@pytest.mark.parametrize("data", [b"", b"hello, not an image", b"%PDF-1.4\n" + b"\x00" * 100, b"\x89PNG\r\n\x1a\n"])
def test_non_image_bytes(data):
    with pytest.raises(InputError, match="not a readable image"):
        prepare_image(data, SIZE)


def test_truncated_png():
    rng = np.random.default_rng(0)
    data = png_bytes(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    with pytest.raises(InputError, match="corrupt"):
        prepare_image(data[: len(data) // 2], SIZE)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        prepare_image(tmp_path / "nope.png", SIZE)


def test_path_to_non_image(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("not an image")
    with pytest.raises(InputError):
        prepare_image(p, SIZE)


@pytest.mark.parametrize("w,h", [(7, 64), (64, 7), (1, 1), (5, 5)])
def test_tiny_images_rejected(w, h):
    img = Image.new("RGB", (w, h), (10, 20, 30))
    with pytest.raises(InputError, match="at least 8x8"):
        prepare_image(png_bytes(img), SIZE)
    with pytest.raises(InputError, match="at least 8x8"):
        prepare_image(np.zeros((h, w, 3), np.uint8), SIZE)


@pytest.mark.parametrize("side,match", [(12_000, "12000x12000 pixels; the limit is 120 megapixels"),
                                        (60_000, "too large")])
def test_huge_dimensions_rejected_before_decoding(side, match):
    # only the header claims a huge image: a decoder that tried would fail on the missing data instead
    with pytest.raises(InputError, match=match):
        prepare_image(png_header_only(side, side), SIZE)
    # a small image built the same way is identified fine and only fails when decoded
    with pytest.raises(InputError, match="corrupt"):
        prepare_image(png_header_only(64, 64), SIZE)


def test_max_pixels_limit(monkeypatch):
    monkeypatch.setattr(preprocess, "MAX_PIXELS", 32 * 32)
    img = Image.new("RGB", (40, 40), (1, 2, 3))
    with pytest.raises(InputError, match="40x40"):
        prepare_image(png_bytes(img), SIZE)
    with pytest.raises(InputError, match="40x40"):
        prepare_image(img, SIZE)  # PIL images and arrays are checked too
    with pytest.raises(InputError, match="40x40"):
        prepare_image(np.zeros((40, 40, 3), np.uint8), SIZE)
    _check_image(prepare_image(Image.new("RGB", (32, 32)), SIZE))


# --------------------------------------------------------------------------------------------------
# images: modes


def test_rgb_values_map_to_minus_one_one():
    img = Image.new("RGB", (32, 32), (255, 0, 128))
    t = prepare_image(png_bytes(img), SIZE)
    _check_image(t)
    torch.testing.assert_close(t[:, 0, 0], torch.tensor([1.0, -1.0, 128 / 255 * 2 - 1]))


def test_grayscale():
    img = Image.new("L", (20, 20), 51)
    t = prepare_image(png_bytes(img), SIZE)
    _check_image(t)
    torch.testing.assert_close(t, torch.full((3, SIZE, SIZE), 51 / 255 * 2 - 1))


def test_rgba_is_composited_on_the_background():
    arr = np.zeros((32, 32, 4), np.uint8)
    arr[..., 0] = 255  # red ...
    arr[:, :16, 3] = 255  # ... opaque on the left, fully transparent on the right
    t = prepare_image(png_bytes(Image.fromarray(arr, "RGBA")), SIZE)
    _check_image(t)
    torch.testing.assert_close(t[:, 4, 2], torch.tensor([1.0, -1.0, -1.0]))  # red
    torch.testing.assert_close(t[:, 4, 13], torch.tensor([1.0, 1.0, 1.0]))  # white background
    black = prepare_image(Image.fromarray(arr, "RGBA"), SIZE, background=(0, 0, 0))
    torch.testing.assert_close(black[:, 4, 13], torch.tensor([-1.0, -1.0, -1.0]))
    # half transparent: an even blend with the background
    arr[..., 3] = 128
    half = prepare_image(Image.fromarray(arr, "RGBA"), SIZE, background=(0, 0, 0))
    torch.testing.assert_close(half[:, 0, 0], torch.tensor([128 / 255 * 2 - 1, -1.0, -1.0]), atol=1 / 255, rtol=0)


def test_16_bit_png():
    arr = np.full((24, 24), 65535, np.uint16)
    arr[:, 12:] = 0
    img = Image.fromarray(arr)
    assert img.mode.startswith("I")
    t = prepare_image(png_bytes(img), 24)
    _check_image(t, 24)
    torch.testing.assert_close(t[:, 0, 0], torch.ones(3))
    torch.testing.assert_close(t[:, 0, 23], -torch.ones(3))
    # 16-bit arrays are scaled, not clipped
    t2 = prepare_image(np.full((16, 16, 3), 32896, np.uint16), SIZE)
    torch.testing.assert_close(t2, torch.full((3, SIZE, SIZE), 128 / 255 * 2 - 1))


def test_palette_with_transparency():
    img = Image.new("P", (16, 16))
    img.putpalette([0, 0, 255] + [255, 0, 0] + [0] * 762)
    px = np.zeros((16, 16), np.uint8)
    px[8:] = 1
    img.putdata(px.flatten().tolist())
    img.info["transparency"] = 1  # palette index 1 is transparent
    t = prepare_image(png_bytes(img, transparency=1), SIZE)
    _check_image(t)
    torch.testing.assert_close(t[:, 0, 0], torch.tensor([-1.0, -1.0, 1.0]))  # blue
    torch.testing.assert_close(t[:, 15, 0], torch.ones(3))  # transparent -> white


def test_float_and_cmyk_inputs():
    _check_image(prepare_image(np.random.default_rng(0).random((20, 30, 3)).astype(np.float32), SIZE))
    nan = np.full((20, 20), np.nan, np.float64)
    _check_image(prepare_image(nan, SIZE))
    cmyk = Image.new("CMYK", (20, 20), (0, 255, 255, 0))
    t = prepare_image(cmyk, SIZE)
    _check_image(t)
    assert float(t[0].mean()) > 0.9 and float(t[1].mean()) < -0.9  # red


def test_centre_crop_and_resize():
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, 20:60] = 255  # the centred square is white, the side bands are cropped away
    t = prepare_image(arr, SIZE)
    torch.testing.assert_close(t, torch.ones(3, SIZE, SIZE))
    # upsampling small inputs works too
    _check_image(prepare_image(np.zeros((9, 9, 3), np.uint8), 32), 32)


def test_bad_arrays():
    for arr in (np.zeros((4, 4, 4, 4)), np.zeros((16, 16, 2)), np.zeros((0, 16, 3)), np.zeros(10)):
        with pytest.raises(InputError):
            prepare_image(arr, SIZE)


# --------------------------------------------------------------------------------------------------
# masks


def test_mask_binary_and_resized():
    m = np.zeros((64, 64), np.uint8)
    m[16:48, 16:48] = 255
    out = prepare_mask(m, SIZE)
    assert out.shape == (SIZE, SIZE) and out.dtype == torch.float32
    expected = torch.zeros(SIZE, SIZE)
    expected[4:12, 4:12] = 1
    assert torch.equal(out, expected)


@pytest.mark.parametrize("fill", [0, 255])
def test_empty_and_full_masks(fill):
    with pytest.raises(InputError, match="empty" if fill == 0 else "whole image"):
        prepare_mask(np.full((32, 32), fill, np.uint8), SIZE)


def test_mask_size_mismatch():
    m = np.zeros((32, 48), np.uint8)
    m[:, :10] = 1
    with pytest.raises(InputError, match="48x32 pixels but the image is 64x64"):
        prepare_mask(m, SIZE, image_size=(64, 64))
    assert prepare_mask(m, SIZE, image_size=(48, 32)).shape == (SIZE, SIZE)


def test_rgba_painted_layer_mask():
    # a brush layer: colour everywhere, but only the painted strokes are opaque
    layer = np.zeros((32, 32, 4), np.uint8)
    layer[..., :3] = 200
    layer[:, 16:, 3] = 255
    out = prepare_mask(Image.fromarray(layer, "RGBA"), SIZE)
    assert out[:, :8].sum() == 0 and out[:, 8:].min() == 1
    out_arr = prepare_mask(layer, SIZE)  # the same as a raw array
    assert torch.equal(out, out_arr)
    # an RGB mask: any non-black pixel is painted
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:16, :, 2] = 30
    out_rgb = prepare_mask(rgb, SIZE)
    assert out_rgb[:8].min() == 1 and out_rgb[8:].sum() == 0


def test_bool_and_float_masks():
    m = np.zeros((16, 16), bool)
    m[:, :4] = True
    assert float(prepare_mask(m, SIZE).sum()) == 16 * 4
    f = np.zeros((16, 16), np.float32)
    f[:4] = 0.3
    assert float(prepare_mask(f, SIZE).sum()) == 16 * 4
    with pytest.raises(InputError):
        prepare_mask(np.zeros((4, 4, 4, 4)), SIZE)


# --------------------------------------------------------------------------------------------------
# property-based


MODES = ["RGB", "RGBA", "L", "LA", "P", "I;16", "I", "F", "1", "CMYK"]


@st.composite
def pil_images(draw):
    mode = draw(st.sampled_from(MODES))
    w = draw(st.integers(1, 70))
    h = draw(st.integers(1, 70))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if mode in ("RGB", "RGBA", "CMYK"):
        arr = rng.integers(0, 256, (h, w, len(mode)), dtype=np.uint8)
        img = Image.fromarray(arr, mode) if mode != "CMYK" else Image.frombytes("CMYK", (w, h), arr.tobytes())
    elif mode == "LA":
        img = Image.fromarray(rng.integers(0, 256, (h, w, 2), dtype=np.uint8)[..., 0]).convert("LA")
    elif mode in ("L", "P", "1"):
        img = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).convert(mode)
    elif mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    elif mode == "I":
        img = Image.fromarray(rng.integers(-(2**20), 2**20, (h, w), dtype=np.int32))
    else:
        img = Image.fromarray(rng.normal(0, 100, (h, w)).astype(np.float32))
    as_bytes = draw(st.booleans()) and mode not in ("CMYK", "F", "I")
    return png_bytes(img) if as_bytes else img


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int64, np.int16, bool]))
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(0, 40)) for _ in range(ndim))
    if ndim == 3:
        shape = shape[:2] + (draw(st.sampled_from([1, 2, 3, 4, 5])),)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    arr = rng.normal(0, 300, shape)
    if draw(st.booleans()):
        arr[rng.random(shape) < 0.1] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e30]))
    with np.errstate(invalid="ignore", over="ignore"):
        return arr.astype(dtype)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.one_of(pil_images(), arrays(), st.binary(max_size=200)), size=st.sampled_from([8, 16, 32]))
def test_prepare_image_property(source, size):
    try:
        out = prepare_image(source, size)
    except InputError as e:
        assert str(e)  # a message for the user
        event("rejected")
        return
    event("accepted")
    assert out.shape == (3, size, size) and out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())
    assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mask=st.one_of(arrays(), pil_images()), size=st.sampled_from([8, 16]), check=st.booleans())
def test_prepare_mask_property(mask, size, check):
    if isinstance(mask, bytes):
        mask = Image.open(io.BytesIO(mask))
    shape = (mask.width, mask.height) if isinstance(mask, Image.Image) else None
    image_size = shape if (check and shape) else None
    try:
        out = prepare_mask(mask, size, image_size=image_size)
    except InputError as e:
        assert str(e)
        event("rejected")
        return
    event("accepted")
    assert out.shape == (size, size) and out.dtype == torch.float32
    values = set(out.unique().tolist())
    assert values == {0.0, 1.0}  # binary, neither empty nor full


def test_to_rgb_modes_are_8_bit_rgb():
    for img in (Image.new("I;16", (9, 9), 300), Image.new("F", (9, 9), 2.5), Image.new("LA", (9, 9), (3, 4)),
                Image.new("1", (9, 9), 1), Image.new("P", (9, 9), 3)):
        out = to_rgb(img)
        assert out.mode == "RGB" and out.size == (9, 9)


def test_open_image_accepts_pil_and_path(tmp_path):
    img = Image.new("RGB", (12, 10), (5, 6, 7))
    p = tmp_path / "x.png"
    img.save(p)
    assert open_image(p).size == (12, 10)
    assert open_image(str(p)).size == (12, 10)
    assert open_image(img) is img
