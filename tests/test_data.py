import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from rdiff.cameras import Cameras, look_at, orbit_cameras, spherical_to_position
from rdiff.data import (
    PosedImage,
    PosedImageDataset,
    clevr1,
    group_by_scene,
    load_transforms,
    views_to_tensors,
    write_transforms,
)
from rdiff.data.clevr1 import BACKGROUND, Clevr1Scene, generate_clevr1, render_view, sample_camera, sample_scene
from rdiff.data.splits import object_split
from rdiff.data.transforms_json import MASK_OBJECT, MASK_SHADOW

# --------------------------------------------------------------------------------------------------
# transforms.json


def _frames(n=4, size=8, seed=0):
    rng = np.random.default_rng(seed)
    cams = orbit_cameras(rng.uniform(0, 360, n), rng.uniform(10, 60, n), rng.uniform(2, 3, n), 0.7)
    return [
        PosedImage(
            image=rng.random((size, size, 3), dtype=np.float32),
            c2w=cams.c2w[i].numpy(),
            fov_x=0.6 + 0.05 * i,
            scene=f"s{i // 2}",
            file_path="",
        )
        for i in range(n)
    ]


def _write_json(folder, meta):
    (folder / "transforms.json").write_text(json.dumps(meta))


def test_round_trip(tmp_path):
    frames = _frames()
    write_transforms(tmp_path, frames)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    assert meta["camera_angle_x"] == pytest.approx(frames[0].fov_x)
    loaded = load_transforms(tmp_path)
    assert len(loaded) == len(frames)
    for a, b in zip(frames, loaded):
        assert b.image.dtype == np.float32 and b.image.shape == a.image.shape
        assert np.abs(a.image - b.image).max() <= 1 / 255 + 1e-6
        assert b.c2w.dtype == np.float32
        np.testing.assert_array_equal(a.c2w, b.c2w)
        assert b.fov_x == pytest.approx(a.fov_x, abs=1e-7)
        assert b.scene == a.scene
        assert not b.file_path.endswith(".png")  # NeRF-synthetic style: no extension
        assert (tmp_path / (b.file_path + ".png")).is_file()
    groups = group_by_scene(loaded)
    assert list(groups) == ["s0", "s1"] and [len(v) for v in groups.values()] == [2, 2]


def test_pngless_paths_scene_default_and_fov_override(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.full((4, 6, 3), 200, np.uint8)).save(tmp_path / "imgs" / "r_0.png")
    Image.fromarray(np.full((4, 6, 3), 10, np.uint8)).save(tmp_path / "imgs" / "r_1.png")
    m = np.eye(4).tolist()
    _write_json(
        tmp_path,
        {
            "camera_angle_x": 0.5,
            "frames": [
                {"file_path": "./imgs/r_0", "transform_matrix": m},
                {"file_path": "imgs/r_1.png", "transform_matrix": m, "camera_angle_x": 0.9, "scene": "x"},
            ],
        },
    )
    a, b = load_transforms(tmp_path)
    assert a.image.shape == (4, 6, 3)
    assert np.allclose(a.image, 200 / 255) and np.allclose(b.image, 10 / 255)
    assert a.fov_x == pytest.approx(0.5) and b.fov_x == pytest.approx(0.9)
    assert a.scene == "r_0" and b.scene == "x"
    # resize to size x size (area filter keeps a constant image constant)
    small = load_transforms(tmp_path, size=2)
    assert small[0].image.shape == (2, 2, 3) and np.allclose(small[0].image, 200 / 255, atol=1e-5)


def _single(tmp_path, img: Image.Image, **kw):
    img.save(tmp_path / "a.png")
    _write_json(tmp_path, {"camera_angle_x": 0.7,
                           "frames": [{"file_path": "a", "transform_matrix": np.eye(4).tolist()}]})
    return load_transforms(tmp_path, **kw)[0].image


def test_rgba_compositing(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (255, 0, 0, 0)  # transparent
    rgba[1, 0] = (0, 0, 0, 128)  # half black
    img = _single(tmp_path, Image.fromarray(rgba, "RGBA"))
    assert np.allclose(img[0, 0], (1, 0, 0))
    assert np.allclose(img[0, 1], (1, 1, 1))  # white background by default
    assert np.allclose(img[1, 0], 1 - 128 / 255, atol=1e-6)
    img = _single(tmp_path, Image.fromarray(rgba, "RGBA"), background=(0.0, 0.5, 0.0))
    assert np.allclose(img[0, 1], (0, 0.5, 0))


def test_grayscale_and_16bit(tmp_path):
    g = np.array([[0, 51], [102, 255]], np.uint8)
    img = _single(tmp_path, Image.fromarray(g, "L"))
    assert img.shape == (2, 2, 3) and img.dtype == np.float32
    assert np.allclose(img[..., 0], g / 255) and np.allclose(img[..., 0], img[..., 2])
    g16 = np.array([[0, 1000], [32768, 65535]], np.uint16)
    img = _single(tmp_path, Image.fromarray(g16))
    assert np.allclose(img[..., 1], g16 / 65535, atol=1e-6)
    assert img.max() == pytest.approx(1.0)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="transforms.json"):
        load_transforms(tmp_path)
    (tmp_path / "transforms.json").write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        load_transforms(tmp_path)
    _write_json(tmp_path, {"camera_angle_x": 0.7})
    with pytest.raises(ValueError, match="frames"):
        load_transforms(tmp_path)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "a.png")
    _write_json(tmp_path, {"camera_angle_x": 0.7, "frames": [{"file_path": "a"}]})
    with pytest.raises(ValueError, match="transform_matrix"):
        load_transforms(tmp_path)
    _write_json(tmp_path, {"frames": [{"file_path": "a", "transform_matrix": np.eye(4).tolist()}]})
    with pytest.raises(ValueError, match="camera_angle_x"):
        load_transforms(tmp_path)
    _write_json(tmp_path, {"camera_angle_x": 0.7,
                           "frames": [{"file_path": "a", "transform_matrix": np.eye(4)[:3].tolist()}]})
    with pytest.raises(ValueError, match="4x4"):
        load_transforms(tmp_path)
    _write_json(tmp_path, {"camera_angle_x": 0.7,
                           "frames": [{"file_path": "b", "transform_matrix": np.eye(4).tolist()}]})
    with pytest.raises(FileNotFoundError, match="b"):
        load_transforms(tmp_path)


def test_tensors_and_dataset(tmp_path):
    frames = _frames(n=3, size=5)
    images, cams = views_to_tensors(frames)
    assert images.shape == (3, 3, 5, 5) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    assert isinstance(cams, Cameras) and cams.c2w.shape == (3, 4, 4)
    write_transforms(tmp_path, frames)
    ds = PosedImageDataset(tmp_path)
    assert len(ds) == 3
    item = ds[1]
    assert item["image"].shape == (3, 5, 5) and item["c2w"].shape == (4, 4)
    assert item["fov_x"].ndim == 0 and item["index"] == 1
    assert torch.allclose(item["image"], images[1], atol=2 / 255 + 1e-6)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 5, 5) and batch["fov_x"].shape == (3,)


# --------------------------------------------------------------------------------------------------
# CLEVR1


def _luma(c):
    return float(np.dot(c, [0.299, 0.587, 0.114]))


def _pixel(img, uv):
    u, v = (int(x) for x in uv)
    return img[v, u]


def test_clevr1_determinism_and_split(tmp_path):
    kw = dict(scenes=5, views=2, size=8, test_fraction=0.4, progress=False, supersample=2, shadow_samples=2)
    generate_clevr1(tmp_path / "a", seed=3, **kw)
    generate_clevr1(tmp_path / "b", seed=3, **kw)
    generate_clevr1(tmp_path / "c", seed=4, **kw)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 2 * 5 * 2 + 5  # image + mask pngs, 2 transforms.json, 2 transforms_<split>.json, scenes.json
    # the NeRF-synthetic root indexes load the same frames as the split folders
    for split in ("train", "test"):
        rooted = load_transforms(tmp_path / "a" / f"transforms_{split}.json")
        direct = load_transforms(tmp_path / "a" / split)
        assert [f.scene for f in rooted] == [f.scene for f in direct]
        np.testing.assert_array_equal(np.stack([f.image for f in rooted]), np.stack([f.image for f in direct]))
        np.testing.assert_array_equal(np.stack([f.mask for f in rooted]), np.stack([f.mask for f in direct]))
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    train = load_transforms(tmp_path / "a" / "train")
    test = load_transforms(tmp_path / "a" / "test")
    other = load_transforms(tmp_path / "c" / "train") + load_transforms(tmp_path / "c" / "test")
    assert not np.array_equal(np.stack([f.image for f in train + test]), np.stack([f.image for f in other]))
    tr, te = group_by_scene(train), group_by_scene(test)
    assert len(tr) == 3 and len(te) == 2 and not set(tr) & set(te)
    assert all(len(v) == 2 for v in list(tr.values()) + list(te.values()))
    assert all(s.startswith("train_") for s in tr) and all(s.startswith("test_") for s in te)
    for f in train + test:
        assert 0 <= f.image.min() and f.image.max() <= 1
        assert math.radians(40) - 1e-6 <= f.fov_x <= math.radians(50) + 1e-6
        r = np.linalg.norm(f.c2w[:3, 3])
        assert 2.7 - 1e-4 <= r <= 3.3 + 1e-4
        # the camera looks at the origin: -Z axis points from the eye to the origin
        assert np.allclose(-f.c2w[:3, 2], -f.c2w[:3, 3] / r, atol=1e-4)


def test_clevr1_test_scenes_stay_held_out_whatever_the_count(tmp_path):
    """A small dataset's test scenes are never train scenes of a larger one (issue: split leak)."""
    kw = dict(views=1, size=8, test_fraction=0.25, progress=False, supersample=1, shadow_samples=1, seed=0)
    small = generate_clevr1(tmp_path / "small", scenes=8, **kw)
    large = generate_clevr1(tmp_path / "large", scenes=40, **kw)
    key = lambda s: (s["shape"], s["colour"], s["material"], s["size"], round(s["yaw"], 6))  # noqa: E731
    small_test = {key(s) for s in small["scenes"] if s["split"] == "test"}
    large_train = {key(s) for s in large["scenes"] if s["split"] == "train"}
    large_test = {key(s) for s in large["scenes"] if s["split"] == "test"}
    assert small_test and not small_test & large_train
    assert small_test <= large_test
    # the images agree too, not only the attributes
    a = load_transforms(tmp_path / "small" / "test")[0].image
    b = load_transforms(tmp_path / "large" / "test")[0].image
    np.testing.assert_array_equal(a, b)


def test_object_split_depends_on_the_object_only():
    names = [f"model_{i}" for i in range(400)]
    splits = {n: object_split(n, 0, 0.2) for n in names}
    assert 40 < sum(v == "test" for v in splits.values()) < 120
    assert all(object_split(n, 0, 0.2) == splits[n] for n in reversed(names))
    assert any(object_split(n, 1, 0.2) != splits[n] for n in names)


def test_clevr1_masks_match_the_rendered_object_and_shadow():
    scene = Clevr1Scene.make("cube", "red", "rubber", "large")
    cams = orbit_cameras(30.0, 40.0, 3.0, math.radians(45))
    img, mask = render_view(scene, cams.c2w[0], math.radians(45), 32, 0, with_mask=True)
    assert mask.shape == (32, 32) and set(np.unique(mask)) <= {0, MASK_SHADOW, MASK_OBJECT}
    obj, shadow = mask == MASK_OBJECT, mask == MASK_SHADOW
    assert obj[16, 16] and 0.05 < obj.mean() < 0.5 and shadow.any()
    red = (img[..., 0] - img[..., 1:].max(-1)) > 0.15
    assert (red & obj).sum() / red.sum() > 0.95  # red pixels are object pixels
    # shadow pixels are darker than the unshadowed ground at the image's border
    ground = ~(mask > 0)
    assert img[shadow].mean() < img[ground].mean() - 0.05
    same = render_view(scene, cams.c2w[0], math.radians(45), 32, 0)
    np.testing.assert_array_equal(img, same)  # asking for a mask does not change the image


def test_masks_round_trip_and_resize(tmp_path):
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = MASK_SHADOW
    mask[6:10, 6:10] = MASK_OBJECT
    frame = PosedImage(np.full((16, 16, 3), 0.5, np.float32), np.eye(4, dtype=np.float32), 0.8, "s", "", mask=mask)
    write_transforms(tmp_path, [frame])
    back = load_transforms(tmp_path)[0]
    np.testing.assert_array_equal(back.mask, mask)
    small = load_transforms(tmp_path, size=8)[0]
    assert small.mask.shape == (8, 8)
    assert small.object_mask[3:5, 3:5].all() and small.object_mask.sum() == 4
    assert small.foreground_mask.sum() == 16


@pytest.mark.parametrize("width,height", [(48, 32), (32, 48)])
def test_non_square_images_are_cropped_not_squashed(tmp_path, width, height):
    """A W x H image loaded at size S is its centred square, with the fov of that square."""
    img = np.zeros((height, width, 3), np.uint8)
    img[:, : width // 2] = 255  # left half white: the centre column is the boundary
    Image.fromarray(img).save(tmp_path / "a.png")
    fov = math.radians(60)
    meta = {"camera_angle_x": fov, "frames": [{"file_path": "a", "transform_matrix": np.eye(4).tolist()}]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    frame = load_transforms(tmp_path, size=16)[0]
    side = min(width, height)
    expected = 2 * math.atan(math.tan(fov / 2) * side / width)
    assert frame.fov_x == pytest.approx(expected)
    assert frame.image.shape == (16, 16, 3)
    # the square is centred: half of it is white, split at the middle
    assert frame.image[:, :8].mean() == pytest.approx(1.0) and frame.image[:, 8:].mean() == pytest.approx(0.0)
    assert load_transforms(tmp_path)[0].fov_x == pytest.approx(fov)  # without size: untouched


def test_paired_dataset_gives_another_view_of_the_same_scene(tmp_path):
    generate_clevr1(tmp_path, scenes=3, views=3, size=8, seed=0, test_fraction=0.0, progress=False,
                    supersample=1, shadow_samples=1)
    ds = PosedImageDataset(tmp_path / "train", paired=True)
    seen = set()
    for _ in range(20):
        for i in range(len(ds)):
            item = ds[i]
            j = item["other_index"]
            assert j != i and ds.scenes[j] == ds.scenes[i]
            assert torch.equal(item["other_image"], ds.images[j]) and torch.equal(item["other_c2w"], ds.c2w[j])
            seen.add((i, j))
    assert len(seen) == len(ds) * 2  # every other view of the scene gets drawn
    assert "other_image" not in PosedImageDataset(tmp_path / "train")[0]


def test_render_view_same_seed_same_image():
    rng = np.random.default_rng(0)
    scene = sample_scene(rng)
    c2w, fov = sample_camera(rng)
    a = render_view(scene, c2w, fov, 16, 5)
    b = render_view(scene, c2w, fov, 16, 5)
    assert a.shape == (16, 16, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert 0 <= a.min() and a.max() <= 1


@pytest.mark.parametrize("shape", ["sphere", "cube", "cylinder"])
def test_red_rubber_centre_is_red(shape):
    scene = Clevr1Scene.make(shape, "red", "rubber", "large")
    cams = orbit_cameras(30.0, 30.0, 3.0, math.radians(45))
    img = render_view(scene, cams.c2w[0], math.radians(45), 32, 0)
    r, g, b = img[16, 16]
    assert r > g + 0.25 and r > b + 0.25
    assert 0 <= img.min() and img.max() <= 1


def test_object_projects_where_camera_says():
    scene = Clevr1Scene.make("sphere", "blue", "rubber", "small")
    size, fov = 48, math.radians(45)
    # Look at a point off to the side so the object is not at the image centre.
    eye = spherical_to_position(torch.tensor(70.0), torch.tensor(35.0), torch.tensor(3.0))
    c2w = look_at(eye[None], torch.tensor([0.55, -0.2, -0.3]))
    cams = Cameras(c2w, torch.tensor([fov]))
    img = render_view(scene, c2w[0], fov, size, 0)
    centre = torch.tensor(scene.centre)[None, None]
    uv = cams.project(centre, size, size)[0, 0]
    assert abs(uv[0] - size / 2) > 5 or abs(uv[1] - size / 2) > 5  # really off-centre
    px = _pixel(img, uv)
    assert px[2] > px[0] + 0.2 and np.abs(px - np.array(BACKGROUND)).max() > 0.1
    mirrored = _pixel(img, (size - uv[0], size - uv[1]))
    assert not mirrored[2] > mirrored[0] + 0.2
    # World +Z is up in the image: a point above the scene is background, the ground below the object is grey.
    top = cams.project(torch.tensor([[[0.55, -0.2, 0.6]]]), size, size)[0, 0]
    assert 0 <= top[0] < size and 0 <= top[1] < size
    assert np.allclose(_pixel(img, top), BACKGROUND, atol=2 / 255)
    ground = cams.project(torch.tensor([[[0.55, -0.2, -0.5]]]), size, size)[0, 0]
    assert ground[1] > uv[1]  # a ground point below the look-at target is lower in the image
    g = _pixel(img, ground)
    assert np.ptp(g) < 0.03 and np.abs(g - np.array(BACKGROUND)).max() > 0.05


def test_soft_shadow_on_far_side_of_key_light():
    scene = Clevr1Scene.make("sphere", "gray", "rubber", "large")
    size, fov = 48, math.radians(45)
    key = clevr1.KEY_LIGHT
    cams = orbit_cameras(key.azimuth_deg + 90.0, 55.0, 3.0, fov)
    img = render_view(scene, cams.c2w[0], fov, size, 0)
    d = key.direction[:2] / np.linalg.norm(key.direction[:2])
    pts = torch.tensor([[[*(-0.65 * d), -0.5], [*(0.85 * d), -0.5]]], dtype=torch.float32)
    uv = cams.project(pts, size, size)[0]
    shadow, lit = _pixel(img, uv[0]), _pixel(img, uv[1])
    assert _luma(shadow) < _luma(lit) - 0.1
    # both are ground (grey, not background)
    for p in (shadow, lit):
        assert np.ptp(p) < 0.03 and np.abs(p - np.array(BACKGROUND)).max() > 0.05


def test_metal_differs_from_rubber():
    cams = orbit_cameras(30.0, 30.0, 3.0, math.radians(45))
    rub = render_view(Clevr1Scene.make("sphere", "cyan", "rubber"), cams.c2w[0], math.radians(45), 24, 0)
    met = render_view(Clevr1Scene.make("sphere", "cyan", "metal"), cams.c2w[0], math.radians(45), 24, 0)
    assert np.abs(rub - met).max() > 0.1


def test_cli(tmp_path, capsys):
    clevr1.main(["--out", str(tmp_path), "--scenes", "2", "--views", "1", "--size", "8", "--seed", "1",
                 "--supersample", "1", "--no-progress"])
    assert (tmp_path / "train" / "transforms.json").is_file()
    assert (tmp_path / "test" / "transforms.json").is_file()
    assert len(load_transforms(tmp_path / "train")[0].image) == 8
