import { Page } from '@playwright/test';
import { test, expect, hydrated } from './fixtures';

// The JobEngine console (issue #6): the jobs list's filters live in the URL
// (a reload restores the view), a bulk cancel of everything matching a
// filter shows its dry-run count and asks first, and a quota is changed
// with validation and confirmation.
//
// The server is shared by every spec: each test works on jobs it names
// with a token of its own, of a task kind no worker runs (they stay queued).

const KIND = 'e2e-unhandled';

function token(prefix: string) {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
}

async function submit(
  page: Page,
  csrf: string,
  job: { name: string; tenant?: string; queue?: string; payload?: object },
): Promise<number> {
  const response = await page.request.post('/api/v1/jobs', {
    headers: { 'X-CSRF-Token': csrf },
    data: {
      name: job.name,
      tenant: job.tenant ?? 'default',
      queue: job.queue ?? 'default',
      tasks: [{ key: 'only', kind: KIND, payload: job.payload ?? {} }],
    },
  });
  expect(response.status(), await response.text()).toBe(201);
  return (await response.json()).id;
}

async function jobState(page: Page, id: number): Promise<string> {
  return (await (await page.request.get(`/api/v1/jobs/${id}`)).json()).state;
}

test('filter the jobs list by state and text; a reload restores the view', async ({ page, csrf }) => {
  const t = token('filter');
  const a = await submit(page, csrf, { name: `${t}-alpha` });
  const b = await submit(page, csrf, { name: 'plain-name', payload: { note: `needle ${t}` } });
  const c = await submit(page, csrf, { name: `${t}-gamma` });
  const cancelled = await page.request.post(`/api/v1/jobs/${c}/cancel`, { headers: { 'X-CSRF-Token': csrf } });
  expect(cancelled.status()).toBe(200);

  await page.goto('/ops/operations/jobengine/jobs');
  await hydrated(page);
  const form = page.getByRole('form', { name: 'Filters' });
  await form.getByLabel('Search').fill(t);
  await form.getByLabel('State').selectOption('queued');
  await form.getByRole('button', { name: 'Apply filters' }).click();

  await expect(page).toHaveURL(/state=queued/);
  await expect(page).toHaveURL(new RegExp(`q=${t}`));
  const rows = page.locator('table.jobs tbody tr');
  // The name matches a, the payload text matches b; c is cancelled.
  await expect(rows).toHaveCount(2);
  await expect(page.locator(`tr[data-job="${a}"]`)).toBeVisible();
  await expect(page.locator(`tr[data-job="${b}"]`)).toBeVisible();
  await expect(page.locator(`tr[data-job="${c}"]`)).toHaveCount(0);

  // Select one row: the selection is in the URL too.
  await page.getByLabel(`Select job ${a}`).check();
  await expect(page).toHaveURL(new RegExp(`sel=${a}`));

  await page.reload();
  await hydrated(page);
  await expect(rows).toHaveCount(2);
  await expect(page.locator(`tr[data-job="${c}"]`)).toHaveCount(0);
  await expect(form.getByLabel('Search')).toHaveValue(t);
  await expect(form.getByLabel('State')).toHaveValue('queued');
  await expect(page.getByLabel(`Select job ${a}`)).toBeChecked();
  await expect(page.getByLabel(`Select job ${b}`)).not.toBeChecked();

  // The other state shows the cancelled one only.
  await form.getByLabel('State').selectOption('cancelled');
  await form.getByRole('button', { name: 'Apply filters' }).click();
  await expect(page).toHaveURL(/state=cancelled/);
  await expect(rows).toHaveCount(1);
  await expect(page.locator(`tr[data-job="${c}"]`)).toBeVisible();

  // Back shows the filters of the address it goes back to, not what was
  // typed for the next one.
  await form.getByLabel('Search').fill(`${t}-none`);
  await form.getByRole('button', { name: 'Apply filters' }).click();
  await expect(page).toHaveURL(new RegExp(`q=${t}-none`));
  await expect(page.locator('[data-empty="jobs"]')).toBeVisible();
  await page.goBack();
  await expect(page).toHaveURL(/state=cancelled/);
  await expect(rows).toHaveCount(1);
  await expect(form.getByLabel('Search')).toHaveValue(t);
  await page.goBack();
  await expect(page).toHaveURL(/state=queued/);
  await expect(rows).toHaveCount(2);
  await expect(form.getByLabel('State')).toHaveValue('queued');
});

test('bulk-cancel everything matching a filter after the dry-run count', async ({ page, csrf }) => {
  const t = token('bulk');
  const ids = [] as number[];
  for (const n of ['one', 'two', 'three']) ids.push(await submit(page, csrf, { name: `${t}-${n}` }));
  const bystander = await submit(page, csrf, { name: 'not-in-the-filter' });

  await page.goto(`/ops/operations/jobengine/jobs?state=queued&q=${t}`);
  await hydrated(page);
  await expect(page.locator('table.jobs tbody tr')).toHaveCount(3);

  await page.locator('[data-bulk="cancel-filter"]').click();
  const confirm = page.getByRole('alertdialog');
  await expect(confirm).toHaveAttribute('data-dry-run-matched', '3');
  await expect(confirm).toHaveAttribute('data-dry-run-applicable', '3');
  await expect(confirm).toContainText('Dry run: 3 jobs match the filter');
  // Nothing changed yet.
  for (const id of ids) expect(await jobState(page, id)).toBe('queued');

  const go = page.locator('[data-bulk-confirm="cancel"]');
  await expect(go).toBeDisabled();
  await confirm.getByLabel('Number of jobs to cancel').fill('3');
  await expect(go).toBeEnabled();
  await go.click();

  await expect(page.locator('[data-bulk-done="cancel"]')).toContainText('Cancelled 3 jobs; 0 skipped; 0 not found.');
  for (const id of ids) {
    await expect(page.locator(`tr[data-result-job="${id}"]`)).toHaveAttribute('data-result', 'changed');
    expect(await jobState(page, id)).toBe('cancelled');
  }
  expect(await jobState(page, bystander)).toBe('queued');
  // The list was read again: no queued job matches any more.
  await expect(page.locator('[data-empty="jobs"]')).toContainText('No job you can see matches these filters.');
});

test('change a quota with validation and confirmation', async ({ page, csrf }) => {
  const tenant = token('quota');
  await submit(page, csrf, { name: `${tenant}-job`, tenant });

  await page.goto('/ops/operations/jobengine/quotas');
  await hydrated(page);
  const row = page.locator(`tr[data-quota="tenant/${tenant}"]`);
  await expect(row).toContainText('no quota');
  await row.getByRole('button', { name: 'Edit limits' }).click();

  await row.getByLabel('Concurrent leases').fill('-2');
  await row.getByRole('button', { name: 'Review' }).click();
  await expect(row.getByRole('alert')).toContainText('must be a whole number');

  await row.getByLabel('Concurrent leases').fill('3');
  await row.getByRole('button', { name: 'Review' }).click();
  await expect(row.getByRole('alertdialog')).toContainText(
    `Set the tenant quota of ${tenant}: concurrent leases unlimited → 3; starts per minute unlimited → unlimited?`,
  );
  await row.locator('[data-confirm-quota]').click();

  await expect(page.locator('[data-toast="quota"]')).toContainText(`Saved the tenant quota of ${tenant}`);
  await expect(row.locator('[data-usage="concurrent"]')).toContainText('0 of 3');
  await expect(row).toContainText('room left');

  const quotas = await (await page.request.get('/api/v1/quotas')).json();
  const saved = quotas.items.find((q: any) => q.scope === 'tenant' && q.name === tenant);
  expect(saved.max_concurrent).toBe(3);

  // The export is a download of the same figures.
  const csv = await page.request.get('/api/v1/quotas/export?format=csv');
  expect(csv.headers()['content-disposition']).toMatch(/^attachment; filename="switchyard-quotas-\d+\.csv"$/);
  expect(await csv.text()).toContain(`tenant,${tenant},true,3,`);
});

test('queue health links each figure to the filtered jobs list', async ({ page, csrf }) => {
  const queue = token('q');
  const id = await submit(page, csrf, { name: `${queue}-job`, queue });

  await page.goto('/ops/operations/jobengine');
  await hydrated(page);
  const row = page.locator(`tr[data-queue="${queue}"]`);
  await expect(row.locator('[data-figure="ready"]')).toHaveText('1');
  await expect(row.locator('[data-figure="paused"]')).toContainText('no');

  await row.locator('[data-figure="ready"] a').click();
  await expect(page).toHaveURL(new RegExp(`queue=${queue}&task_state=ready`));
  await expect(page.locator('table.jobs tbody tr')).toHaveCount(1);
  await expect(page.locator(`tr[data-job="${id}"]`)).toBeVisible();
});

test('the jobs list follows its rows live and counts new submissions', async ({ page, csrf }) => {
  const name = token('live-list');
  const first = await page.request.post('/api/v1/jobs', {
    headers: { 'X-CSRF-Token': csrf },
    data: { name: `${name}-a`, tasks: [{ key: 'wait', kind: 'sleep', payload: { ms: 8000 } }] },
  });
  expect(first.status(), await first.text()).toBe(201);
  const id = (await first.json()).id;

  await page.goto(`/ops/operations/jobengine/jobs?q=${name}`);
  await hydrated(page);
  const row = page.locator(`tr[data-job="${id}"]`);
  await expect(row).toHaveCount(1);
  // Read before the task finished; the state and progress change without a reload.
  expect(['queued', 'running']).toContain(await row.getAttribute('data-state'));
  // A running job's time so far counts on.
  await expect(row).toHaveAttribute('data-state', 'running', { timeout: 10_000 });
  const soFar = row.locator('td[data-col="duration"]');
  await expect(soFar).toContainText('so far');
  const firstSoFar = await soFar.innerText();
  await expect
    .poll(async () => {
      const now = await soFar.innerText();
      return now !== firstSoFar && now.includes('so far');
    }, { timeout: 5_000 })
    .toBe(true);
  await expect(row).toHaveAttribute('data-state', 'succeeded', { timeout: 15_000 });
  await expect(row).toContainText('1/1 succeeded');
  await expect(row.locator('td').last()).toHaveText('1'); // attempts

  // A job submitted after the read is counted, and reading again shows it.
  const second = await submit(page, csrf, { name: `${name}-b` });
  await expect(page.locator('[data-new-jobs]')).toBeVisible({ timeout: 10_000 });
  await page.getByRole('button', { name: 'Read again' }).click();
  await expect(page.locator(`tr[data-job="${second}"]`)).toHaveCount(1);
  await expect(page.locator('tbody tr[data-job]')).toHaveCount(2);

  // A filter that matches nothing yet watches for the jobs that will.
  await page.goto(`/ops/operations/jobengine/jobs?q=${name}-later`);
  await hydrated(page);
  await expect(page.locator('[data-empty="jobs"]')).toBeVisible();
  const later = await submit(page, csrf, { name: `${name}-later` });
  await expect(page.locator('[data-new-jobs]')).toBeVisible({ timeout: 10_000 });
  await page.getByRole('button', { name: 'Read again' }).click();
  await expect(page.locator(`tr[data-job="${later}"]`)).toHaveCount(1);
});

test('cancelling a job, which cannot be undone, asks for its name', async ({ page, csrf }) => {
  const name = token('cancel-me');
  const id = await submit(page, csrf, { name });
  await page.goto(`/ops/operations/jobengine/jobs/${id}`);
  await hydrated(page);
  const action = page.locator('[data-action="Cancel job"]');
  await action.getByRole('button', { name: 'Cancel job' }).click();
  const confirm = action.getByRole('button', { name: 'Confirm: Cancel job' });
  await expect(confirm).toBeDisabled();
  await action.getByLabel(`Type ${name} to confirm`).fill(`${name}x`);
  await expect(confirm).toBeDisabled();
  expect(await jobState(page, id)).toBe('queued');
  await action.getByLabel(`Type ${name} to confirm`).fill(name);
  await confirm.click();
  await expect.poll(() => jobState(page, id)).toBe('cancelled');
  // The job is over: the page follows live and offers no cancel.
  await expect(page.locator('[data-action="Cancel job"]')).toHaveCount(0);
});

test('an action after the session has ended says so, and how to sign in again', async ({ page, csrf, errors }) => {
  const name = token('ended');
  const id = await submit(page, csrf, { name });
  await page.goto(`/ops/operations/jobengine/jobs/${id}`);
  await hydrated(page);
  // Signed out elsewhere (another tab, an admin, an expiry).
  const out = await page.request.post('/api/v1/auth/logout', { headers: { 'X-CSRF-Token': csrf } });
  expect(out.status()).toBe(204);
  const action = page.locator('[data-action="Cancel job"]');
  await action.getByRole('button', { name: 'Cancel job' }).click();
  await action.getByLabel(`Type ${name} to confirm`).fill(name);
  await action.getByRole('button', { name: 'Confirm: Cancel job' }).click();
  await expect(action.getByRole('alert')).toHaveText('Your session has ended: reload the page to sign in again.');
  // The refused request is the console error this test causes.
  errors.splice(0, errors.length, ...errors.filter((e) => !e.includes('status of 401')));
});
