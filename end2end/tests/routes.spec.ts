import { test, expect, hydrated } from './fixtures';

// Every canonical route of SPEC §3 with the title it must carry.
const routes: [string, string][] = [
  ['/ops', 'Operator snapshot'],
  ['/ops/access', 'Access'],
  ['/ops/approvals', 'Approvals'],
  ['/ops/operations/jobs-queues', 'Jobs & Queues'],
  ['/ops/operations/jobengine', 'JobEngine'],
  ['/ops/operations/jobengine/jobs', 'Jobs'],
  ['/ops/operations/jobengine/jobs/job-17', 'Job job-17'],
  ['/ops/operations/jobengine/jobs/job-17/dag', 'DAG of job job-17'],
  ['/ops/operations/jobengine/quotas', 'Quotas'],
  ['/ops/operations/dead-letter', 'Dead-letter'],
  ['/ops/operations/dead-letter/queue', 'Dead-letter queue'],
  ['/ops/operations/dead-letter/entry/dl-5', 'Dead-letter entry dl-5'],
  ['/ops/operations/scheduler', 'Scheduler'],
  ['/ops/operations/scheduler/runs', 'Runs'],
  ['/ops/operations/scheduler/runs/run-3/stream', 'Run run-3'],
  ['/ops/operations/scheduler/schedules', 'Schedules'],
  ['/ops/operations/scheduler/workers', 'Workers'],
  ['/ops/scanner-ops', 'Scanner Ops'],
  ['/ops/scanner-ops/offline-kits', 'Offline kits'],
  ['/ops/scanner-ops/baselines', 'Baselines'],
  ['/ops/scanner-ops/analyzers', 'Analyzers'],
  ['/ops/scanner-ops/performance', 'Performance'],
  ['/ops/scanner-ops/settings', 'Scanner settings'],
];

// Pages that read the kernel: never the "not connected" empty state.
const connected = new Set([
  '/ops/access',
  '/ops/operations/jobengine',
  '/ops/operations/jobengine/jobs',
  '/ops/operations/jobengine/quotas',
]);

for (const [path, title] of routes) {
  test(`${path} renders "${title}"`, async ({ page }) => {
    const response = await page.goto(path);
    expect(response?.status()).toBe(200);
    await expect(page).toHaveTitle(`${title} · Switchyard`);
    await expect(page.locator('h1')).toHaveText(title);
    await expect(page.getByRole('navigation', { name: 'Breadcrumbs' })).toBeVisible();
    if (path === '/ops') {
      // Connected to the kernel: the snapshot, not an empty state.
      await expect(page.locator('[data-card="active-jobs"]')).toBeVisible();
    } else if (
      path === '/ops/operations/jobengine/jobs/job-17' ||
      path === '/ops/operations/jobengine/jobs/job-17/dag'
    ) {
      // Connected to the kernel: "job-17" is not a job id it knows.
      await expect(page.locator('.not-found-state')).toContainText('No such job');
    } else if (connected.has(path)) {
      // Read from the kernel: a table, a form, or an honest empty state.
      await expect(page.locator('main').locator('table, form, .empty-state').first()).toBeVisible();
      await expect(page.getByText('Nothing to show yet')).toHaveCount(0);
    } else {
      await expect(page.locator('.empty-state')).toContainText('Nothing to show yet');
    }
    await hydrated(page);
  });
}

test('path parameters are shown back', async ({ page }) => {
  await page.goto('/ops/operations/jobengine/jobs/abc-123/dag');
  await expect(page.locator('.not-found-state code')).toHaveText('abc-123');
  await page.goto('/ops/operations/scheduler/runs/r-77/stream');
  await expect(page.locator('[data-param="runId"]')).toHaveText('r-77');
  await page.goto('/ops/operations/dead-letter/entry/e-9');
  await expect(page.locator('[data-param="entryId"]')).toHaveText('e-9');
});

test('the root opens the operator snapshot', async ({ page }) => {
  await page.goto('/');
  await expect(page).toHaveURL(/\/ops$/);
  await expect(page.locator('h1')).toHaveText('Operator snapshot');
});

test('unknown paths get the 404 page with status 404', async ({ page, errors }) => {
  const response = await page.goto('/ops/operations/no-such-page?x=1');
  expect(response?.status()).toBe(404);
  // Chromium reports the document's own 404 status as a console error: on
  // this page that status is the point. Exactly that one is expected.
  const statusErrors = errors.filter((e) => e.includes('status of 404'));
  expect(statusErrors).toHaveLength(1);
  errors.splice(0, errors.length, ...errors.filter((e) => !e.includes('status of 404')));
  await expect(page).toHaveTitle('Page not found · Switchyard');
  await expect(page.locator('h1')).toHaveText('Page not found');
  await expect(page.locator('code')).toHaveText('/ops/operations/no-such-page');
  await hydrated(page);
});
