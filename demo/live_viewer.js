// rdiff live orbit viewer: ray-marches a baked volume (rdiff/baked_volume.py) on a 2D canvas, in the browser.
// No WebGL and no server work per frame. Runs as a gr.HTML component's js_on_load (`element`, `props`, `watch`).
// The algorithm is render_baked() of rdiff/baked_volume.py, which tests compare this code with.
// Drag the canvas (or the orbit sliders) to orbit; the view starts at the input camera.

const EL_MIN = -30, EL_MAX = 89, DEG_PER_PX = 0.6, BLOCK = 4, T_MIN = 1e-4;

function decodeGrid(p, raw) {
  const n = p.resolution, n3 = n * n * n, cell = 2 * p.bound / n;
  const sigma = new Float32Array(n3), srgb = new Float32Array(3 * n3);
  const table = new Float32Array(256);
  for (let q = 0; q < 256; q++) {
    const a = Math.min((q / 255) ** 2, 1 - 1e-4);
    table[q] = -Math.log1p(-a) / cell;
  }
  for (let i = 0; i < n3; i++) {
    const s = table[raw[i]];
    sigma[i] = s;
    const j = n3 + 3 * i;
    srgb[3 * i] = s * raw[j] / 255; srgb[3 * i + 1] = s * raw[j + 1] / 255; srgb[3 * i + 2] = s * raw[j + 2] / 255;
  }
  // Block occupancy: block b holds any density in its cells or the next one up on each axis (what a trilinear
  // sample whose lower corner lies in b reads), so skipping an empty block is exact.
  const nb = Math.ceil(n / BLOCK), occ = new Uint8Array(nb * nb * nb);
  for (let x = 0; x < n; x++) for (let y = 0; y < n; y++) for (let z = 0; z < n; z++) {
    if (sigma[(x * n + y) * n + z] === 0) continue;
    for (const bx of new Set([Math.floor(x / BLOCK), Math.floor(Math.max(x - 1, 0) / BLOCK)]))
      for (const by of new Set([Math.floor(y / BLOCK), Math.floor(Math.max(y - 1, 0) / BLOCK)]))
        for (const bz of new Set([Math.floor(z / BLOCK), Math.floor(Math.max(z - 1, 0) / BLOCK)]))
          occ[(bx * nb + by) * nb + bz] = 1;
  }
  return { n, cell, sigma, srgb, occ, nb };
}

async function decodePayload(text) {
  const p = JSON.parse(text);
  if (p.version !== 1) throw new Error(`unsupported volume version ${p.version}`);
  const bin = Uint8Array.from(atob(p.grid), (c) => c.charCodeAt(0));
  const stream = new Blob([bin]).stream().pipeThrough(new DecompressionStream("deflate"));
  const raw = new Uint8Array(await new Response(stream).arrayBuffer());
  const n = p.resolution;
  if (raw.length !== 4 * n * n * n) throw new Error("volume grid size does not match its resolution");
  return { ...p, ...decodeGrid(p, raw), R: p.rotation };
}

function backgroundFn(spec) {
  if (spec.kind === "constant") { const c = spec.rgb; return () => c; }
  const freqs = spec.freqs, F = freqs.length;
  const layers = spec.layers.map((l) => ({ w: Float32Array.from(l.weight.flat()), b: Float32Array.from(l.bias),
                                          n: l.weight[0].length, out: new Float32Array(l.bias.length) }));
  const x0 = new Float32Array(6 + 6 * F);
  return (o, d) => {
    x0[0] = d[0]; x0[1] = d[1]; x0[2] = d[2]; x0[3] = o[0] / 4; x0[4] = o[1] / 4; x0[5] = o[2] / 4;
    for (let i = 0; i < 3; i++) for (let f = 0; f < F; f++) {
      const a = d[i] * freqs[f] * Math.PI;
      x0[6 + i * F + f] = Math.sin(a); x0[6 + 3 * F + i * F + f] = Math.cos(a);
    }
    let x = x0;
    for (let k = 0; k < layers.length; k++) {
      const { w, b, n, out } = layers[k], last = k === layers.length - 1;
      for (let r = 0; r < out.length; r++) {
        let s = b[r];
        for (let c = 0, j = r * n; c < n; c++, j++) s += w[j] * x[c];
        out[r] = last ? 1 / (1 + Math.exp(-s)) : s / (1 + Math.exp(-s));
      }
      x = out;
    }
    return x;
  };
}

// World camera on the input camera's sphere, as rdiff.cameras.orbit_cameras / look_at, then in the triplane frame.
function camera(v, azDeg, elDeg) {
  const az = azDeg * Math.PI / 180, el = elDeg * Math.PI / 180, r = v.radius;
  const eye = [r * Math.cos(el) * Math.cos(az), r * Math.cos(el) * Math.sin(az), r * Math.sin(el)];
  const norm = (a) => { const l = Math.hypot(a[0], a[1], a[2]) || 1; return [a[0] / l, a[1] / l, a[2] / l]; };
  const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
  const fwd = norm([-eye[0], -eye[1], -eye[2]]);
  let right = cross(fwd, [0, 0, 1]);
  if (Math.hypot(...right) < 1e-6) right = cross(fwd, [0, 1, 0]);
  right = norm(right);
  const up = cross(right, fwd);
  const R = v.R;  // world-from-triplane, row-major: local = R^T world
  const local = (a) => [R[0] * a[0] + R[3] * a[1] + R[6] * a[2], R[1] * a[0] + R[4] * a[1] + R[7] * a[2],
                        R[2] * a[0] + R[5] * a[1] + R[8] * a[2]];
  return { o: local(eye), right: local(right), up: local(up), fwd: local(fwd) };
}

// The background of every pixel: exact for a constant one; the per-ray MLP is evaluated on a grid of rays through
// every background_stride-th pixel corner (the payload's) and interpolated bilinearly (it is smooth; a quarter of the evaluations).
function backgroundImage(v, cam, f) {
  const size = v.size, bg = v.bgFn || (v.bgFn = backgroundFn(v.background));
  if (v.background.kind === "constant") return null;
  const S = v.background_stride, m = Math.ceil(size / S) + 1;
  const grid = v.bgGrid && v.bgGrid.length === 3 * m * m ? v.bgGrid : (v.bgGrid = new Float32Array(3 * m * m));
  const d = [0, 0, 0];
  for (let j = 0; j < m; j++) for (let i = 0; i < m; i++) {
    const x = (S * i - 0.5 * size) / f, y = -(S * j - 0.5 * size) / f;
    for (let k = 0; k < 3; k++) d[k] = cam.right[k] * x + cam.up[k] * y + cam.fwd[k];
    const l = Math.hypot(d[0], d[1], d[2]); d[0] /= l; d[1] /= l; d[2] /= l;
    const c = bg(cam.o, d), q = 3 * (j * m + i);
    grid[q] = c[0]; grid[q + 1] = c[1]; grid[q + 2] = c[2];
  }
  return { grid, m };
}

function render(v, azDeg, elDeg, image) {
  const { n, cell, sigma, srgb, occ, nb, bound: b } = v, size = v.size, data = image.data;
  const cam = camera(v, azDeg, elDeg), o = cam.o, f = 0.5 * size / Math.tan(0.5 * v.fov_x);
  const bgImage = backgroundImage(v, cam, f), constant = v.background.rgb;
  const step = cell, nn = n * n, d = [0, 0, 0], back = [0, 0, 0];
  for (let py = 0; py < size; py++) for (let px = 0; px < size; px++) {
    const x = (px + 0.5 - 0.5 * size) / f, y = -(py + 0.5 - 0.5 * size) / f;
    for (let i = 0; i < 3; i++) d[i] = cam.right[i] * x + cam.up[i] * y + cam.fwd[i];
    const l = Math.hypot(d[0], d[1], d[2]); d[0] /= l; d[1] /= l; d[2] /= l;
    let near = 0, far = Infinity;
    for (let i = 0; i < 3; i++) {
      const inv = 1 / (Math.abs(d[i]) < 1e-9 ? 1e-9 : d[i]);
      const t0 = (-b - o[i]) * inv, t1 = (b - o[i]) * inv;
      near = Math.max(near, Math.min(t0, t1)); far = Math.min(far, Math.max(t0, t1));
    }
    let cr = 0, cg = 0, cb = 0, T = 1;
    if (far > near) {
      for (let t = near; t < far && T > T_MIN; t += step) {
        const delta = Math.min(step, far - t), tm = t + 0.5 * delta;
        let gx = (o[0] + d[0] * tm + b) / cell - 0.5, gy = (o[1] + d[1] * tm + b) / cell - 0.5,
          gz = (o[2] + d[2] * tm + b) / cell - 0.5;
        gx = Math.min(Math.max(gx, 0), n - 1); gy = Math.min(Math.max(gy, 0), n - 1); gz = Math.min(Math.max(gz, 0), n - 1);
        const ix = Math.min(Math.floor(gx), n - 2), iy = Math.min(Math.floor(gy), n - 2), iz = Math.min(Math.floor(gz), n - 2);
        if (!occ[((Math.floor(ix / BLOCK) * nb) + Math.floor(iy / BLOCK)) * nb + Math.floor(iz / BLOCK)]) continue;
        const fx = gx - ix, fy = gy - iy, fz = gz - iz;
        let s = 0, sr = 0, sg = 0, sb = 0;
        for (let c = 0; c < 8; c++) {
          const dx = c >> 2, dy = (c >> 1) & 1, dz = c & 1;
          const w = (dx ? fx : 1 - fx) * (dy ? fy : 1 - fy) * (dz ? fz : 1 - fz);
          const k = (ix + dx) * nn + (iy + dy) * n + iz + dz;
          s += w * sigma[k]; sr += w * srgb[3 * k]; sg += w * srgb[3 * k + 1]; sb += w * srgb[3 * k + 2];
        }
        if (s <= 0) continue;
        const a = 1 - Math.exp(-s * delta), wt = T * a / s;
        cr += wt * sr; cg += wt * sg; cb += wt * sb; T *= 1 - a;
      }
    }
    if (!bgImage) { back[0] = constant[0]; back[1] = constant[1]; back[2] = constant[2]; } else {
      const { grid, m } = bgImage, u = (px + 0.5) / v.background_stride, w = (py + 0.5) / v.background_stride;
      const i0 = Math.floor(u), j0 = Math.floor(w), fu = u - i0, fw = w - j0;
      for (let k = 0; k < 3; k++) {
        const g = (jj, ii) => grid[3 * (jj * m + ii) + k];
        back[k] = (1 - fw) * ((1 - fu) * g(j0, i0) + fu * g(j0, i0 + 1)) + fw * ((1 - fu) * g(j0 + 1, i0) + fu * g(j0 + 1, i0 + 1));
      }
    }
    const j = 4 * (py * size + px);
    data[j] = Math.round(255 * Math.min(Math.max(cr + T * back[0], 0), 1));
    data[j + 1] = Math.round(255 * Math.min(Math.max(cg + T * back[1], 0), 1));
    data[j + 2] = Math.round(255 * Math.min(Math.max(cb + T * back[2], 0), 1));
    data[j + 3] = 255;
  }
}

const viewer = { volume: null, az: 0, el: 30, pending: false, frames: 0, lastMs: 0, token: 0 };

function draw() {
  viewer.pending = false;
  const canvas = element.querySelector("canvas"), info = element.querySelector(".live3d-info");
  if (!canvas || !viewer.volume) return;
  const v = viewer.volume;
  if (canvas.width !== v.size) { canvas.width = v.size; canvas.height = v.size; viewer.image = null; }
  const ctx = canvas.getContext("2d");
  if (!viewer.image) viewer.image = ctx.createImageData(v.size, v.size);
  const t0 = performance.now();
  render(v, viewer.az, viewer.el, viewer.image);
  ctx.putImageData(viewer.image, 0, 0);
  viewer.lastMs = performance.now() - t0;
  viewer.frames += 1;
  canvas.dataset.frames = String(viewer.frames);
  canvas.dataset.view = `${viewer.az.toFixed(1)},${viewer.el.toFixed(1)}`;
  if (info) info.textContent = `azimuth ${(((viewer.az % 360) + 360) % 360).toFixed(0)}°, elevation ` +
    `${viewer.el.toFixed(0)}° · ${viewer.lastMs.toFixed(1)} ms per frame`;
}

function requestDraw() {
  if (!viewer.pending) { viewer.pending = true; requestAnimationFrame(draw); }
}

function setView(az, el) {
  viewer.az = Number(az); viewer.el = Math.min(Math.max(Number(el), EL_MIN), EL_MAX);
  requestDraw();
}

function bind() {
  const canvas = element.querySelector("canvas");
  if (!canvas || canvas.dataset.bound) return;
  canvas.dataset.bound = "1";
  let last = null;
  canvas.addEventListener("pointerdown", (e) => {
    last = [e.clientX, e.clientY];
    try { canvas.setPointerCapture(e.pointerId); } catch (err) { /* a synthetic pointer: nothing to capture */ }
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!last) return;
    const dx = e.clientX - last[0], dy = e.clientY - last[1];
    last = [e.clientX, e.clientY];
    setView(viewer.az - dx * DEG_PER_PX, viewer.el + dy * DEG_PER_PX);
  });
  const end = () => { last = null; };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
}

async function load() {
  bind();
  const token = ++viewer.token, text = props.value;
  const info = element.querySelector(".live3d-info");
  if (!text) { viewer.volume = null; if (info) info.textContent = "Run a task to orbit its 3D result here."; return; }
  try {
    const v = await decodePayload(text);
    if (token !== viewer.token) return;  // a newer result arrived meanwhile
    viewer.volume = v; viewer.az = v.azimuth; viewer.el = v.elevation;
    element.dataset.ready = "1";
    requestDraw();
  } catch (err) {
    viewer.volume = null;
    if (info) info.textContent = `This browser cannot show the live view (${err.message}).`;
  }
}

// The orbit sliders (props.sliders: the elem_ids of the azimuth and elevation sliders) turn the view at once, from
// their own input events (delegated: the sliders may render after this component); the server's exact orbit
// render of the same step follows in its own image.
function followSliders() {
  const ids = String(props.sliders || "").split(",").filter(Boolean);
  if (ids.length !== 2) return;
  const key = ids.join(","), registry = (window.__rdiffLiveSliders = window.__rdiffLiveSliders || {});
  const installed = key in registry;
  registry[key] = setView;  // this (latest) viewer's: a re-mounted component takes over the listener
  if (installed) return;
  document.addEventListener("input", (e) => {
    if (!(e.target instanceof Element) || !ids.some((id) => e.target.closest(`#${id}`))) return;
    const read = (id) => Number((e.target.closest(`#${id}`) ? e.target
      : document.querySelector(`#${id} input[type=range]`) || {}).value);
    const az = read(ids[0]), el = read(ids[1]);
    if (Number.isFinite(az) && Number.isFinite(el)) registry[key](az, el);
  }, true);
}

const api = { setView, view: () => [viewer.az, viewer.el], frameMs: () => viewer.lastMs };
element.rdiffLive = api;
let host = element.parentElement;  // the component root: the first ancestor with an id of our own (not html-...)
while (host && !(host.id && !host.id.startsWith("html-"))) host = host.parentElement;
if (host) host.rdiffLive = api;
watch("value", load);
followSliders();
load();
