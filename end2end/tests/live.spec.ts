import { spawn, ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test as base, expect, Page, APIRequestContext } from '@playwright/test';

// Live updates (SPEC §5) in the browser: /ops and a job page follow the
// kernel without a reload, and reconnect and catch up after the server
// restarts.
//
// These specs run their own `switchyard serve` (the release build, embedded
// workers on, a fresh SQLite file) so they can restart it and so that the
// figures they read are not moved by other specs.

const BIN = path.resolve(__dirname, '../../target/release/switchyard');
const LIVE_ADMIN = { username: 'admin', password: 'live-admin-password' };

class Server {
  child?: ChildProcess;
  readonly dir = mkdtempSync(path.join(tmpdir(), 'switchyard-live-'));
  constructor(readonly port: number) {}

  get base() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    this.child = spawn(
      BIN,
      ['serve', '--addr', `127.0.0.1:${this.port}`, '--database-url', `sqlite:${this.dir}/live.db`],
      // The first start creates `admin` with this password (SPEC §6).
      { cwd: this.dir, stdio: 'ignore', env: { ...process.env, SWITCHYARD_ADMIN_PASSWORD: LIVE_ADMIN.password } },
    );
    for (let i = 0; i < 200; i++) {
      try {
        const r = await fetch(`${this.base}/readyz`);
        if (r.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('switchyard did not become ready');
  }

  /** SIGTERM, and wait for the process to exit: graceful shutdown must not
   *  be held open by the page's event stream. */
  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited, 'switchyard exits cleanly on SIGTERM').toBe(0);
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

// Like fixtures.ts, every console error and page error fails the spec, with
// one exception this spec causes on purpose: while the server is restarting,
// the browser reports the refused connections of the event stream.
const test = base.extend<{ server: Server; csrf: string; errors: string[]; restarting: { on: boolean } }>({
  server: async ({}, use) => {
    const server = new Server(await freePort());
    await server.start();
    await use(server);
    await server.stop();
  },
  // The page's browser context signed in to this server; the session is in
  // its database, so it survives the restarts below.
  csrf: async ({ page, server }, use) => {
    const response = await page.request.post(`${server.base}/api/v1/auth/login`, { data: LIVE_ADMIN });
    expect(response.status()).toBe(200);
    await use((await response.json()).csrf_token);
  },
  restarting: async ({}, use) => {
    await use({ on: false });
  },
  errors: [
    // Depends on `server` so that the server stops only after the errors are
    // checked (its shutdown would otherwise show up as refused reconnects).
    async ({ page, restarting, server }, use) => {
      void server;
      const errors: string[] = [];
      const expected = (text: string) =>
        restarting.on && /net::ERR_CONNECTION_REFUSED|net::ERR_EMPTY_RESPONSE|Failed to load resource/.test(text);
      page.on('console', (msg) => {
        if (msg.type() === 'error' && !expected(msg.text())) errors.push(`console: ${msg.text()}`);
      });
      page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
      await use(errors);
      expect(errors, 'console and page errors').toEqual([]);
    },
    { auto: true },
  ],
});

async function hydrated(page: Page) {
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
}

async function submit(request: APIRequestContext, server: Server, csrf: string, job: object): Promise<number> {
  const response = await request.post(`${server.base}/api/v1/jobs`, {
    data: job,
    headers: { 'X-CSRF-Token': csrf },
  });
  expect(response.status()).toBe(201);
  return (await response.json()).id;
}

const failing = (name: string) => ({
  name,
  tasks: [
    {
      key: 'boom',
      kind: 'exec',
      payload: { cmd: 'sh', args: ['-c', 'exit 3'] },
      max_attempts: 1,
    },
  ],
});

const quick = (name: string) => ({ name, tasks: [{ key: 'only', kind: 'noop' }] });

/** The timeline entry of `type` for job `id` whose text contains `text`. */
function entry(page: Page, type: string, id: number, text: string) {
  return page
    .locator(`.timeline li[data-type="${type}"]`)
    .filter({ has: page.locator(`a[href$="/jobs/${id}"]`) })
    .filter({ hasText: text });
}

test('/ops follows the kernel live: jobs start, succeed, fail and dead-letter without a reload', async ({ page, server, csrf }) => {
  await page.goto(`${server.base}/ops`);
  await hydrated(page);
  await expect(page.locator('.live-indicator')).toHaveAttribute('data-status', 'live');
  // A marker that a reload would erase.
  await page.evaluate(() => ((window as any).__sameDocument = true));

  // The embedded worker node is in the inventory.
  await expect(page.locator('table.nodes tbody tr')).toHaveCount(1);
  await expect(page.locator('[data-card="healthy-nodes"] .card-value')).toHaveText('1 of 1');
  await expect(page.locator('[data-card="pending-approvals"] .card-value')).toHaveText('Not available');

  const ok = await submit(page.request, server, csrf, quick('live-ok'));
  await expect(entry(page, 'job.stateChanged', ok, '→ running')).toHaveCount(1);
  await expect(entry(page, 'job.stateChanged', ok, '→ succeeded')).toHaveCount(1);

  const bad = await submit(page.request, server, csrf, failing('live-bad'));
  await expect(entry(page, 'job.stateChanged', bad, '→ failed')).toHaveCount(1);
  await expect(entry(page, 'dlq.added', bad, 'exited with code 3')).toHaveCount(1);

  expect(await page.evaluate(() => (window as any).__sameDocument)).toBe(true);
});

test('a job page shows task states and attempts change live', async ({ page, server, csrf }) => {
  // `wait` sleeps long enough for the page to load before anything ends;
  // `boom` runs after it and fails for good on its only attempt.
  const id = await submit(page.request, server, csrf, {
    name: 'live-job',
    tasks: [
      { key: 'wait', kind: 'sleep', payload: { ms: 3000 } },
      {
        key: 'boom',
        kind: 'exec',
        payload: { cmd: 'sh', args: ['-c', 'exit 3'] },
        depends_on: ['wait'],
        max_attempts: 1,
      },
    ],
  });
  await page.goto(`${server.base}/ops/operations/jobengine/jobs/${id}`);
  await hydrated(page);
  await page.evaluate(() => ((window as any).__sameDocument = true));
  await expect(page.locator('.live-indicator')).toHaveAttribute('data-status', 'live');
  await expect(page.locator('h1')).toHaveText(`Job ${id}`);
  await expect(page.locator('tr[data-task="boom"] .state')).toHaveAttribute('data-state', 'pending');

  await expect(page.locator('tr[data-task="wait"] .state').first()).toHaveAttribute('data-state', 'succeeded', {
    timeout: 15_000,
  });
  await expect(page.locator('table.tasks tr[data-task="boom"] .state')).toHaveAttribute('data-state', 'failed', {
    timeout: 15_000,
  });
  await expect(page.locator('.job-state')).toHaveAttribute('data-state', 'failed');

  // Each attempt with its node, epoch and outcome.
  const attempts = page.locator('table.attempts tbody tr');
  await expect(attempts).toHaveCount(2);
  await expect(page.locator('table.attempts tr[data-task="wait"] .state')).toHaveAttribute('data-state', 'succeeded');
  await expect(page.locator('table.attempts tr[data-task="boom"] .state')).toHaveAttribute('data-state', 'failed');
  await expect(page.locator('table.attempts tr[data-task="boom"]')).toContainText('exited with code 3');

  // What the page patched equals what the server renders now.
  const patched = await page.locator('table.tasks tbody').innerText();
  expect(await page.evaluate(() => (window as any).__sameDocument)).toBe(true);
  await page.reload();
  await hydrated(page);
  expect(await page.locator('table.tasks tbody').innerText()).toBe(patched);
});

test('an unknown job id shows an honest not-found state', async ({ page, server, csrf }) => {
  void csrf;
  await page.goto(`${server.base}/ops/operations/jobengine/jobs/999999`);
  await expect(page.locator('.not-found-state')).toContainText('No such job');
  await hydrated(page);
});

test('after a server restart the page reconnects and catches up', async ({ page, server, csrf, restarting }) => {
  await page.goto(`${server.base}/ops`);
  await hydrated(page);
  await expect(page.locator('.live-indicator')).toHaveAttribute('data-status', 'live');
  await page.evaluate(() => ((window as any).__sameDocument = true));

  restarting.on = true;
  await server.stop();
  await expect(page.locator('.live-indicator')).not.toHaveAttribute('data-status', 'live');
  await expect(page.locator('.live-indicator')).toContainText(/Disconnected|polling/);
  await server.start();

  // Written right after the restart: the page receives it by replay from
  // its last seen id or live, whichever comes first; either way, once.
  const id = await submit(page.request, server, csrf, quick('after-restart'));
  await expect(page.locator('.live-indicator')).toHaveAttribute('data-status', 'live', { timeout: 20_000 });
  await expect(entry(page, 'job.stateChanged', id, '→ succeeded')).toHaveCount(1, { timeout: 20_000 });
  restarting.on = false;
  expect(await page.evaluate(() => (window as any).__sameDocument)).toBe(true);
});

test('a stream that goes quiet is taken for dropped, and the page catches up once it can', async ({ page, server, csrf, restarting }) => {
  // Two missed heartbeats (15 s apart) and the slack: about 35 s of silence.
  test.setTimeout(120_000);
  await page.goto(`${server.base}/ops`);
  await hydrated(page);
  const indicator = page.locator('.live-indicator');
  await expect(indicator).toHaveAttribute('data-status', 'live');

  // A stopped server keeps its connections open and says nothing: what a
  // hung proxy or a half-open connection looks like.
  restarting.on = true;
  server.child!.kill('SIGSTOP');
  try {
    await expect(indicator).not.toHaveAttribute('data-status', 'live', { timeout: 60_000 });
    await expect(indicator).toContainText(/Disconnected|polling|unreachable/);
  } finally {
    server.child!.kill('SIGCONT');
  }
  const id = await submit(page.request, server, csrf, quick('after-the-stall'));
  await expect(indicator).toHaveAttribute('data-status', 'live', { timeout: 60_000 });
  await expect(entry(page, 'job.stateChanged', id, '→ succeeded')).toHaveCount(1, { timeout: 20_000 });
  restarting.on = false;
});

test('with neither the stream nor the log in reach, the header says the server is unreachable', async ({ page, server, csrf, restarting }) => {
  void csrf; // signed in
  test.setTimeout(120_000);
  restarting.on = true;
  await page.route('**/api/v1/events**', (route) => route.abort('connectionrefused'));
  await page.goto(`${server.base}/ops`);
  await hydrated(page);
  const indicator = page.locator('.live-indicator');
  await expect(indicator).toHaveAttribute('data-status', 'unreachable', { timeout: 30_000 });
  await expect(indicator).toContainText('Server unreachable');
  await page.unroute('**/api/v1/events**');
  await expect(indicator).toHaveAttribute('data-status', 'live', { timeout: 60_000 });
  restarting.on = false;
});
