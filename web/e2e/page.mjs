// Drives the page (web/www) in Debian's Chromium through playwright-core, as a user would, and
// writes what the page showed to OUT/result.json for tests/web_page.rs, which checks it against
// the native binary (cnn-gpu train / eval / predict / convolve on the same files).
//
//   node web/e2e/page.mjs CONFIG.json
//
// CONFIG: { "www": dir, "out": dir, "files": [4 IDX paths], "settings": {...the page's form},
//           "bad": { "truncated": [4 paths], "swapped": [4 paths], "not_a_checkpoint": path,
//                    "batch_norm_checkpoint": path }, "train_timeout_s": n }
// Each step prints a line; any failure exits 1 with the step's name.
import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { readFile, writeFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';

const config = JSON.parse(await readFile(process.argv[2], 'utf8'));
const result = { steps: [] };
const t0 = Date.now();
const log = (s) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${s}`);

// The page and its wasm, served as any static server would (module scripts and wasm need their
// content types).
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm', '.png': 'image/png' };
const server = createServer(async (req, res) => {
  const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
  const file = join(config.www, path === '/' ? 'index.html' : path);
  try {
    const body = await readFile(file);
    res.writeHead(200, { 'content-type': TYPES[extname(file)] || 'application/octet-stream' });
    res.end(body);
  } catch {
    res.writeHead(404); res.end('not found');
  }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${server.address().port}/`;

const FLAGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const launch = (webgpu) => chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: webgpu ? [...FLAGS, '--enable-unsafe-webgpu'] : [...FLAGS, '--disable-webgpu'],
});

let browser;
async function step(name, f) {
  log(name);
  try {
    const v = await f();
    result.steps.push(name);
    return v;
  } catch (e) {
    result.failed = { step: name, error: String(e && e.stack ? e.stack : e) };
    console.error(`step "${name}" failed: ${e && e.stack ? e.stack : e}`);
    await writeFile(join(config.out, 'result.json'), JSON.stringify(result, null, 1));
    if (browser) await browser.close().catch(() => {});
    server.close();
    process.exit(1);
  }
}

// The message line after an action that must be refused: it changes to a new text.
async function refusal(page, action) {
  await page.evaluate(() => { document.getElementById('message').textContent = ''; });
  await action();
  await page.waitForFunction(() => document.getElementById('message').textContent !== '', null, { timeout: 60000 });
  return page.textContent('#message');
}

const state = (page) => page.evaluate(() => JSON.parse(JSON.stringify(window.cnnPage)));

// ---- Without WebGPU: the page says so and offers the CPU backend. ------------------------------
await step('no WebGPU: the page says so and offers the CPU backend', async () => {
  browser = await launch(false);
  const page = await browser.newPage();
  await page.goto(url);
  await page.waitForSelector('#nogpu', { state: 'visible', timeout: 60000 });
  result.no_webgpu = { backend: await page.textContent('#backend'), why: await page.textContent('#nogpu-why') };
  await page.click('#use-cpu');
  await page.waitForFunction(() => window.cnnPage.backend, null, { timeout: 30000 });
  result.no_webgpu.fallback = await page.textContent('#backend');
  await browser.close();
});

// ---- With WebGPU (SwiftShader on a machine without a GPU). -------------------------------------
browser = await launch(true);
const page = await browser.newPage();
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(String(e)));

await step('open the page on WebGPU', async () => {
  await page.goto(url);
  await page.waitForFunction(() => window.cnnPage.backend || window.cnnPage.noGpu, null, { timeout: 60000 });
  const s = await state(page);
  if (!s.backend) throw new Error(`no WebGPU adapter: ${s.noGpu}`);
  result.backend = s.backend;
});

await step('train with no dataset is refused', async () => {
  result.no_data = await refusal(page, () => page.click('#train'));
});

const bad = config.bad;
await step('a truncated file is refused', async () => {
  result.truncated = await refusal(page, () => page.setInputFiles('#files', bad.truncated));
});
await step('swapped files are refused', async () => {
  result.swapped = await refusal(page, () => page.setInputFiles('#files', bad.swapped));
});

await step('load the dataset', async () => {
  await page.setInputFiles('#files', config.files);
  await page.waitForFunction(() => window.cnnPage.data, null, { timeout: 120000 });
  result.data = (await state(page)).data;
  result.data_status = await page.textContent('#data-status');
});

// The form, filled in as a user would.
async function fill(s) {
  await page.selectOption('#preset', s.preset);
  await page.selectOption('#optimizer', s.optimizer);
  for (const [id, v] of [['batch', s.batch_size], ['lr', s.lr], ['epochs', s.epochs], ['seed', s.seed], ['log', s.log_interval], ['limit', s.train_limit]]) {
    await page.fill('#' + id, String(v));
  }
}

await step('absurd settings are refused', async () => {
  const s = config.settings;
  result.absurd = {};
  for (const [name, change] of [['batch 0', { batch_size: 0 }], ['lr -1', { lr: -1 }], ['epochs 1000', { epochs: 1000 }], ['batch 2.5', { batch_size: 2.5 }]]) {
    await fill({ ...s, ...change });
    result.absurd[name] = await refusal(page, () => page.click('#train'));
    if ((await state(page)).running) throw new Error(`${name} started a run`);
  }
});

await step('train, pausing once', async () => {
  await fill(config.settings);
  await page.click('#train');
  await page.waitForFunction(() => window.cnnPage.running, null, { timeout: 30000 });
  // Pause after the first loss line: the step count must hold still.
  await page.waitForFunction(() => window.cnnPage.lines.length > 0 || window.cnnPage.finished, null, { timeout: config.train_timeout_s * 1000 });
  if (!(await state(page)).finished) {
    await page.click('#pause');
    await page.waitForFunction(() => !window.cnnPage.ticking, null, { timeout: 120000 });
    const before = await page.textContent('#speed');
    await page.waitForTimeout(1500);
    const after = await page.textContent('#speed');
    result.pause = { before, after, button: await page.textContent('#pause') };
    await page.click('#pause');
  }
  await page.waitForFunction(() => window.cnnPage.finished || !window.cnnPage.running, null, { timeout: config.train_timeout_s * 1000 });
  const s = await state(page);
  if (!s.finished) throw new Error(`the run ended without finishing: ${await page.textContent('#message')}`);
  result.lines = s.lines;
  result.accuracy = s.accuracy;
  result.speed = await page.textContent('#speed');
  result.progress = await page.evaluate(() => [document.getElementById('progress').value, document.getElementById('progress').max]);
  result.message = await page.textContent('#message');
});

await step('draw a digit and get a prediction', async () => {
  await page.locator('#pad').scrollIntoViewIfNeeded();
  const box = await page.locator('#pad').boundingBox();
  const at = (x, y) => [box.x + box.width * x / 280, box.y + box.height * y / 280];
  // A "7": the bar, then the stroke down to the left.
  await page.mouse.move(...at(70, 60));
  await page.mouse.down();
  for (const [x, y] of [[140, 60], [210, 60], [180, 140], [150, 220], [135, 250]]) await page.mouse.move(...at(x, y), { steps: 8 });
  await page.mouse.up();
  await page.waitForFunction(() => document.querySelectorAll('#top3 li').length === 3, null, { timeout: 120000 });
  result.top3 = (await state(page)).prediction;
  result.top3_text = await page.$$eval('#top3 li', (ls) => ls.map((l) => l.textContent));
  const png = await page.evaluate(() => document.getElementById('pad').toDataURL('image/png').split(',')[1]);
  await writeFile(join(config.out, 'digit.png'), Buffer.from(png, 'base64'));
});

async function download(name) {
  const [dl] = await Promise.all([page.waitForEvent('download', { timeout: 120000 }), page.click('#download')]);
  const path = join(config.out, name);
  await dl.saveAs(path);
  return path;
}

await step('download the checkpoint', async () => {
  result.checkpoint = await download('page.safetensors');
  result.suggested = 'cnn-gpu-web.safetensors';
});

await step('a file that is not a checkpoint is refused, the model kept', async () => {
  result.not_a_checkpoint = await refusal(page, () => page.setInputFiles('#ckpt', bad.not_a_checkpoint));
});
await step('a batch-norm checkpoint is refused, the model kept', async () => {
  result.batch_norm_checkpoint = await refusal(page, () => page.setInputFiles('#ckpt', bad.batch_norm_checkpoint));
  result.checkpoint_after_refusals = await download('page-after-refusals.safetensors');
});

await step('load the checkpoint back', async () => {
  await page.setInputFiles('#ckpt', result.checkpoint);
  await page.waitForFunction(() => /^loaded/.test(document.getElementById('ckpt-status').textContent), null, { timeout: 60000 });
  result.loaded = await page.textContent('#ckpt-status');
});

await step('the playground convolves and pools on the page\'s backend', async () => {
  result.playground = {};
  for (const [name, button] of [['edge', '#pg-conv'], ['max', '#pg-max'], ['avg', '#pg-avg']]) {
    await page.evaluate(() => { window.cnnPage.playground = null; });
    await page.click(button);
    await page.waitForFunction(() => window.cnnPage.playground, null, { timeout: 60000 });
    result.playground[name] = (await state(page)).playground;
  }
  result.playground.input = await page.inputValue('#pg-input');
  await page.fill('#pg-stride', '0');
  result.playground.stride0 = await refusal(page, () => page.click('#pg-conv'));
});

await page.screenshot({ path: join(config.out, 'page.png'), fullPage: true });
result.console_errors = consoleErrors;
await browser.close();
server.close();
result.seconds = (Date.now() - t0) / 1000;
await writeFile(join(config.out, 'result.json'), JSON.stringify(result, null, 1));
log('done');
