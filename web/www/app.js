// The page: drives the wasm App (web/src/lib.rs) one call at a time, scheduling training in
// short ticks so the page stays responsive.
import init, { App } from './pkg/cnn_gpu_web.js';

const $ = (id) => document.getElementById(id);
let app = null;
let queue = Promise.resolve();
// One call into the app at a time (its methods borrow it across their awaits).
const call = (f) => (queue = queue.then(() => f(app), () => f(app)));
const state = { running: false, paused: false, losses: [], lines: [] };
window.cnnPage = state; // for the end-to-end test

function say(text, ok = false) {
  $('message').textContent = text;
  $('message').className = ok ? 'ok' : '';
}
const fail = (e) => { say(String(e && e.message ? e.message : e)); };

async function start() {
  await init();
  if (!navigator.gpu) {
    noGpu('this browser has no navigator.gpu (WebGPU is off or unsupported)');
    return;
  }
  try {
    app = await App.gpu();
    ready();
  } catch (e) {
    noGpu(String(e));
  }
}

function noGpu(why) {
  $('backend').textContent = 'No WebGPU adapter.';
  $('nogpu-why').textContent = why;
  $('nogpu').hidden = false;
  state.noGpu = why;
}

function ready() {
  $('backend').textContent = 'Backend: ' + app.backend();
  $('nogpu').hidden = true;
  state.backend = app.backend();
}

$('use-cpu').onclick = () => { try { app = App.cpu(); ready(); } catch (e) { fail(e); } };

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

const NAMES = ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'];

async function loadData(parts) {
  if (!app) throw new Error('choose a backend first');
  const r = JSON.parse(await call((a) => a.load_data(...parts)));
  $('data-status').textContent = `${r.train} training and ${r.test} test images`;
  state.data = r;
  say('Dataset loaded.', true);
}

$('load-served').onclick = async () => {
  try {
    const dir = 'data/' + $('dataset').value + '/';
    await loadData(await Promise.all(NAMES.map((n) => fetchBytes(dir + n + '.gz'))));
  } catch (e) { fail(e); }
};

$('files').onchange = async (ev) => {
  try {
    const files = [...ev.target.files];
    const pick = (n) => {
      const f = files.find((f) => f.name.startsWith(n));
      if (!f) throw new Error(`pick the four files: ${NAMES.join(', ')} (.gz or raw); ${n} is missing`);
      return f;
    };
    await loadData(await Promise.all(NAMES.map(async (n) => new Uint8Array(await pick(n).arrayBuffer()))));
  } catch (e) { fail(e); }
};

function settings() {
  const num = (id) => Number($(id).value);
  return {
    preset: $('preset').value, optimizer: $('optimizer').value, batch_size: num('batch'),
    lr: num('lr'), epochs: num('epochs'), seed: num('seed'), log_interval: num('log'),
    train_limit: num('limit'),
  };
}

$('train').onclick = async () => {
  try {
    if (!app) throw new Error('choose a backend first');
    const s = settings();
    for (const k of ['batch_size', 'epochs', 'seed', 'log_interval', 'train_limit']) {
      if (!Number.isInteger(s[k]) || s[k] < 0) throw new Error(`${k.replace('_', ' ')} must be a whole number ≥ 0`);
    }
    await call((a) => a.start(JSON.stringify(s)));
    state.losses = []; state.lines = []; state.accuracy = []; state.speed = 0;
    $('log-lines').textContent = ''; $('accuracy').textContent = '';
    state.running = true; state.paused = false; state.finished = false;
    $('pause').disabled = false; $('stop').disabled = false; $('train').disabled = true;
    say('Training…', true);
    setTimeout(loop, 0);
  } catch (e) { fail(e); }
};

$('pause').onclick = () => {
  state.paused = !state.paused;
  $('pause').textContent = state.paused ? 'Resume' : 'Pause';
  if (!state.paused) setTimeout(loop, 0);
};

$('stop').onclick = async () => {
  state.running = false;
  await call((a) => a.stop());
  finish('Stopped.');
};

function finish(text) {
  state.running = false;
  $('pause').disabled = true; $('stop').disabled = true; $('train').disabled = false;
  $('pause').textContent = 'Pause';
  say(text, true);
}

// One tick in flight at most: a Resume clicked while a paused tick finishes starts no second loop.
async function loop() {
  if (!state.running || state.paused || state.ticking) return;
  state.ticking = true;
  try {
    const t = JSON.parse(await call((a) => a.tick(150)));
    for (const l of t.lines) { state.lines.push(l); $('log-lines').textContent += l + '\n'; }
    $('log-lines').scrollTop = 1e9;
    state.losses.push(...t.losses);
    for (const [epoch, c, n] of t.accuracy) {
      const line = `Epoch ${epoch}: test accuracy ${(100 * c / n).toFixed(2)}% (${c}/${n})`;
      state.accuracy.push({ epoch, correct: c, total: n, text: line });
      $('accuracy').innerHTML += line + '<br>';
    }
    $('progress').max = t.total_steps || 1; $('progress').value = t.steps_done;
    // A tick that only found the run over trained nothing: keep the last speed.
    if (t.images_per_sec > 0) state.speed = t.images_per_sec;
    $('speed').textContent = `${t.steps_done}/${t.total_steps} steps, ${(state.speed || 0).toFixed(0)} images/s`;
    drawCurve();
    await drawKernels();
    if (t.finished) { state.finished = true; finish('Finished.'); return; }
  } catch (e) { state.running = false; finish('Training stopped.'); fail(e); return; } finally { state.ticking = false; }
  setTimeout(loop, 0);
}

function drawCurve() {
  const c = $('curve'), g = c.getContext('2d');
  g.clearRect(0, 0, c.width, c.height);
  const pts = state.losses;
  if (pts.length === 0) return;
  const maxX = Math.max(...pts.map((p) => p[0])), maxY = Math.max(...pts.map((p) => p[1]));
  g.strokeStyle = '#1565c0'; g.beginPath();
  pts.forEach(([x, y], i) => {
    const px = 30 + (c.width - 40) * x / maxX, py = c.height - 20 - (c.height - 30) * y / maxY;
    i ? g.lineTo(px, py) : g.moveTo(px, py);
  });
  g.stroke();
  g.fillStyle = '#000'; g.fillText(maxY.toFixed(2), 2, 12); g.fillText('0', 2, c.height - 20);
  g.fillText('step ' + maxX, c.width - 60, c.height - 5);
}

async function drawKernels() {
  const k = JSON.parse(await call((a) => a.conv1()));
  const [n, , kh, kw] = k.shape;
  const c = $('kernels'), g = c.getContext('2d');
  const cell = Math.floor(Math.min(c.height / kh, c.width / (n * (kw + 1))));
  g.clearRect(0, 0, c.width, c.height);
  for (let o = 0; o < n; o++) {
    const w = k.data.slice(o * kh * kw, (o + 1) * kh * kw);
    const lo = Math.min(...w), hi = Math.max(...w);
    for (let i = 0; i < kh * kw; i++) {
      const v = Math.round(255 * (w[i] - lo) / ((hi - lo) || 1));
      g.fillStyle = `rgb(${v},${v},${v})`;
      g.fillRect((o * (kw + 1) + (i % kw)) * cell, Math.floor(i / kw) * cell, cell, cell);
    }
  }
}

$('download').onclick = async () => {
  try {
    const bytes = await call((a) => a.checkpoint());
    const url = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
    const a = document.createElement('a');
    a.href = url; a.download = 'cnn-gpu-web.safetensors'; a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) { fail(e); }
};

$('ckpt').onchange = async (ev) => {
  try {
    const f = ev.target.files[0];
    if (!f) return;
    if (!app) throw new Error('choose a backend first');
    if (state.running) throw new Error('stop the run before loading a checkpoint');
    const bytes = new Uint8Array(await f.arrayBuffer());
    const arch = await call((a) => a.load_checkpoint(bytes));
    $('ckpt-status').textContent = `loaded ${f.name}: ${arch}`;
    await drawKernels();
    say('Checkpoint loaded.', true);
  } catch (e) { fail(e); }
};

// The drawing pad: white ink on black, as MNIST.
const pad = $('pad'), pg = pad.getContext('2d');
function clearPad() { pg.fillStyle = '#000'; pg.fillRect(0, 0, pad.width, pad.height); $('top3').innerHTML = ''; }
clearPad();
let drawing = false;
pad.onpointerdown = (e) => { drawing = true; pg.beginPath(); pg.moveTo(e.offsetX, e.offsetY); };
pad.onpointermove = (e) => {
  if (!drawing) return;
  pg.strokeStyle = '#fff'; pg.lineWidth = 18; pg.lineCap = 'round';
  pg.lineTo(e.offsetX, e.offsetY); pg.stroke();
};
pad.onpointerup = pad.onpointerleave = () => { if (drawing) { drawing = false; predict(); } };
$('clear').onclick = clearPad;
$('predict').onclick = () => predict();

async function predict() {
  try {
    if (!app) throw new Error('choose a backend first');
    const blob = await new Promise((r) => pad.toBlob(r, 'image/png'));
    const png = new Uint8Array(await blob.arrayBuffer());
    const r = JSON.parse(await call((a) => a.predict(png)));
    const ranked = r.probs.map((p, i) => [i, p]).sort((a, b) => b[1] - a[1]).slice(0, 3);
    $('top3').innerHTML = ranked.map(([c, p]) => `<li>${c}: ${(100 * p).toFixed(2)}%</li>`).join('');
    state.prediction = ranked;
    const s = $('seen'), g = s.getContext('2d'), img = g.createImageData(28, 28);
    r.pixels.forEach((v, i) => { img.data.set([v, v, v, 255], 4 * i); });
    const tmp = document.createElement('canvas'); tmp.width = tmp.height = 28;
    tmp.getContext('2d').putImageData(img, 0, 0);
    g.imageSmoothingEnabled = false; g.drawImage(tmp, 0, 0, s.width, s.height);
  } catch (e) { fail(e); }
}

// The playground: the app's backend (on WebGPU, the conv2d and pooling kernels training uses).
function showMatrix(r, formula) {
  const rows = [];
  for (let i = 0; i < r.rows; i++) rows.push(r.data.slice(i * r.cols, (i + 1) * r.cols).map((v) => v.toFixed(2).padStart(7)).join(' '));
  $('pg-output').textContent = rows.join('\n');
  $('pg-formula').textContent = formula;
  state.playground = { rows: r.rows, cols: r.cols, data: r.data, formula };
}
const dims = (text) => { const rows = text.trim().split(/[;\n]/).filter((r) => r.trim()); return [rows.length, rows[0].trim().split(/[\s,]+/).length]; };
$('pg-conv').onclick = async () => {
  try {
    if (!app) throw new Error('choose a backend first');
    const stride = Number($('pg-stride').value), padding = Number($('pg-padding').value);
    if (!Number.isInteger(stride) || stride < 1) throw new Error('the stride must be a whole number ≥ 1');
    if (!Number.isInteger(padding) || padding < 0) throw new Error('the padding must be a whole number ≥ 0');
    const input = $('pg-input').value, kernel = $('pg-kernel').value;
    const r = JSON.parse(await call((a) => a.convolve(input, kernel, stride, padding)));
    const [h, w] = dims(input);
    const k = /^[a-z]+$/.test(kernel.trim()) ? [3, 3] : dims(kernel);
    showMatrix(r, `output ${r.rows}×${r.cols} = ⌊(${h} + 2·${padding} − ${k[0]}) / ${stride}⌋ + 1 by ⌊(${w} + 2·${padding} − ${k[1]}) / ${stride}⌋ + 1`);
    say('', true);
  } catch (e) { fail(e); }
};
const pooled = (kind) => async () => {
  try {
    if (!app) throw new Error('choose a backend first');
    const input = $('pg-input').value;
    const r = JSON.parse(await call((a) => a.pool(input, kind, 2, 2)));
    const [h, w] = dims(input);
    showMatrix(r, `2×2 ${kind} pooling, stride 2: output ${r.rows}×${r.cols} = ⌊${h}/2⌋ by ⌊${w}/2⌋`);
    say('', true);
  } catch (e) { fail(e); }
};
$('pg-max').onclick = pooled('max');
$('pg-avg').onclick = pooled('avg');

start().catch(fail);
