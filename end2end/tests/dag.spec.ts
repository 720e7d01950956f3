import { test, expect, hydrated } from './fixtures';

// The DAG page (issue #6 item 4): a job's task graph laid out by dependency
// depth, task states updated live from the job's stream, a task selected by
// a click into `?task=KEY` and shown in the inspector.

test('the DAG draws every task, follows states live and inspects a task', async ({ page, csrf }) => {
  const name = `dag-${Date.now().toString(36)}`;
  const response = await page.request.post('/api/v1/jobs', {
    headers: { 'X-CSRF-Token': csrf },
    data: {
      name,
      tenant: 'default',
      queue: 'default',
      tasks: [
        { key: 'fetch', kind: 'sleep', payload: { ms: 1500 } },
        { key: 'build', kind: 'noop', payload: {}, depends_on: ['fetch'] },
        { key: 'publish', kind: 'noop', payload: {}, depends_on: ['fetch', 'build'] },
      ],
    },
  });
  expect(response.status(), await response.text()).toBe(201);
  const id = (await response.json()).id;

  await page.goto(`/ops/operations/jobengine/jobs/${id}/dag`);
  await expect(page).toHaveTitle(`DAG of job ${id} · Switchyard`);
  await hydrated(page);
  const nodes = page.locator('svg.dag g.dag-node');
  await expect(nodes).toHaveCount(3);
  // The edges are drawn as one path, an `M` (move) starting each.
  await expect(page.locator('svg.dag .dag-edge')).toHaveAttribute('d', /^(M[^M]+){3}$/);
  // Layered by depth: fetch left of build left of publish.
  const x = async (key: string) => (await page.locator(`g.dag-node[data-task="${key}"]`).boundingBox())!.x;
  expect(await x('fetch')).toBeLessThan(await x('build'));
  expect(await x('build')).toBeLessThan(await x('publish'));
  // Live: every task reaches succeeded without a reload.
  for (const key of ['fetch', 'build', 'publish']) {
    await expect(page.locator(`g.dag-node[data-task="${key}"]`)).toHaveAttribute('data-state', 'succeeded', {
      timeout: 20_000,
    });
  }
  await expect(page.locator('.dag-legend li')).toHaveCount(7);

  // Zoom changes the viewBox; reset restores it.
  const svg = page.locator('svg.dag');
  const home = await svg.getAttribute('viewBox');
  await page.getByRole('button', { name: 'Zoom in' }).click();
  await expect(svg).not.toHaveAttribute('viewBox', home!);
  await page.getByRole('button', { name: 'Reset' }).click();
  await expect(svg).toHaveAttribute('viewBox', home!);
  // Labels are drawn while they can be read: zoomed far out, they are not.
  const label = page.locator('g.dag-node[data-task="build"] text');
  await expect(label).toBeVisible();
  for (let i = 0; i < 6; i++) await page.getByRole('button', { name: 'Zoom out' }).click();
  await expect(label).toBeHidden();
  await expect(nodes).toHaveCount(3);
  await page.getByRole('button', { name: 'Reset' }).click();
  await expect(label).toBeVisible();
  // The drawing's size on screen counts too: measured again on a resize.
  const size = page.viewportSize()!;
  await page.setViewportSize({ width: 320, height: 480 });
  await expect(label).toBeHidden();
  await page.setViewportSize(size);
  await expect(label).toBeVisible();

  await page.locator('g.dag-node[data-task="build"]').click();
  await expect(page).toHaveURL(/\?task=build$/);
  await expect(page.locator('g.dag-node[data-task="build"]')).toHaveAttribute('aria-selected', 'true');
  const inspector = page.locator('aside.dag-inspector');
  await expect(inspector.locator('h2[data-task]')).toHaveText('Task build');
  await expect(inspector.locator('.facts .state')).toHaveText('succeeded');
  const attempt = inspector.locator('tr[data-attempt]');
  await expect(attempt).toHaveCount(1);
  await expect(attempt.locator('.state')).toHaveText('succeeded');
  const attemptId = await attempt.getAttribute('data-attempt');
  await expect(attempt.getByRole('link', { name: 'Log' })).toHaveAttribute(
    'href',
    `/ops/operations/jobengine/jobs/${id}/dag?task=build&attempt=${attemptId}`,
  );
  // The latest attempt's log is shown in the inspector.
  await expect(inspector.locator(`section.attempt-log[data-attempt="${attemptId}"]`)).toBeVisible();
  // A finished job offers no cancel; a succeeded task no retry.
  await expect(inspector.getByRole('button')).toHaveCount(0);
});

// The journey of issue #6: watch a DAG live, open its failing task, read the
// log, retry it and see it succeed — all from the DAG page. The task fails
// on its first run and leaves a marker file behind, so its retry succeeds.
test('a failing task opened from the DAG: read its log, retry it, it succeeds', async ({ page, csrf }) => {
  const marker = `/tmp/switchyard-e2e-dag-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
  const script = `if [ -f ${marker} ]; then echo fixed now; else touch ${marker}; echo disk full on the first run >&2; exit 3; fi`;
  const response = await page.request.post('/api/v1/jobs', {
    headers: { 'X-CSRF-Token': csrf },
    data: {
      name: `dag-fail-${Date.now().toString(36)}`,
      tasks: [
        { key: 'prepare', kind: 'noop' },
        { key: 'flaky', kind: 'exec', payload: { cmd: 'sh', args: ['-c', script] }, max_attempts: 1, depends_on: ['prepare'] },
        { key: 'report', kind: 'noop', depends_on: ['flaky'] },
      ],
    },
  });
  expect(response.status(), await response.text()).toBe(201);
  const id = (await response.json()).id;

  await page.goto(`/ops/operations/jobengine/jobs/${id}/dag`);
  await hydrated(page);
  const flaky = page.locator('g.dag-node[data-task="flaky"]');
  const report = page.locator('g.dag-node[data-task="report"]');
  await expect(flaky).toHaveAttribute('data-state', 'failed', { timeout: 15_000 });
  await expect(report).toHaveAttribute('data-state', 'skipped');

  await flaky.click();
  await expect(page).toHaveURL(/\?task=flaky$/);
  const inspector = page.locator('aside.dag-inspector');
  await expect(inspector.locator('.facts .state')).toHaveText('failed');
  await expect(inspector.locator('section.attempt-log .log')).toContainText('disk full on the first run');

  await inspector.getByRole('button', { name: 'Retry task' }).click();
  await expect(flaky).toHaveAttribute('data-state', 'succeeded', { timeout: 15_000 });
  await expect(report).toHaveAttribute('data-state', 'succeeded', { timeout: 15_000 });
  await expect(inspector.locator('tr[data-attempt]')).toHaveCount(2);
  // The inspector follows to the new attempt's log.
  await expect(inspector.locator('section.attempt-log .log')).toContainText('fixed now', { timeout: 10_000 });
  await expect(inspector.getByRole('button', { name: 'Retry task' })).toHaveCount(0);
});

test('a selected task in the URL opens in the inspector', async ({ page, csrf }) => {
  const response = await page.request.post('/api/v1/jobs', {
    headers: { 'X-CSRF-Token': csrf },
    data: { name: `dag-q-${Date.now().toString(36)}`, tasks: [{ key: 'only', kind: 'noop' }] },
  });
  expect(response.status(), await response.text()).toBe(201);
  const id = (await response.json()).id;
  await page.goto(`/ops/operations/jobengine/jobs/${id}/dag?task=only`);
  await expect(page.locator('aside.dag-inspector h2[data-task]')).toHaveText('Task only');
  // Drawn selected by the server, and still so once the page is live.
  await expect(page.locator('g.dag-node[data-task="only"]')).toHaveAttribute('aria-selected', 'true');
  await hydrated(page);
  await expect(page.locator('g.dag-node[data-task="only"]')).toHaveAttribute('aria-selected', 'true');
});

test('the graph page takes the read started when the pointer reached its link', async ({ page, csrf }) => {
  const response = await page.request.post('/api/v1/jobs', {
    headers: { 'X-CSRF-Token': csrf },
    data: {
      name: `dag-ahead-${Date.now().toString(36)}`,
      tasks: [
        { key: 'first', kind: 'noop' },
        { key: 'second', kind: 'noop', depends_on: ['first'] },
      ],
    },
  });
  expect(response.status(), await response.text()).toBe(201);
  const id = (await response.json()).id;
  await page.goto(`/ops/operations/jobengine/jobs/${id}`);
  await hydrated(page);
  const reads: string[] = [];
  page.on('request', (r) => {
    if (r.url().includes('get_job_view')) reads.push(r.url());
  });
  const link = page.locator('a[data-link="dag"]');
  await link.hover();
  await expect.poll(() => reads.length).toBe(1);
  await link.click();
  await expect(page.locator('svg.dag g.dag-node')).toHaveCount(2);
  await expect(page.locator('svg.dag .dag-edge')).toHaveAttribute('d', /^M[^M]+$/);
  expect(reads, 'the page read nothing more').toHaveLength(1);
});
