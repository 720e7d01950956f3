import { test, expect, hydrated } from './fixtures';

// A quota holds a job, the explainer names the quota, and raising the
// quota on the quotas page releases the job, which then runs (issue #6).

test('a quota holds a queued job, the explainer names it, and lifting it releases the job', async ({
  page,
  csrf,
}) => {
  const tenant = `hold-${Date.now().toString(36)}`;
  // No lease at all for this tenant.
  const set = await page.request.put(`/api/v1/quotas/tenant/${tenant}`, {
    headers: { 'X-CSRF-Token': csrf },
    data: { max_concurrent: 0, max_starts_per_minute: null },
  });
  expect(set.status(), await set.text()).toBe(200);

  const submitted = await page.request.post('/api/v1/jobs', {
    headers: { 'X-CSRF-Token': csrf },
    data: { name: `${tenant}-job`, tenant, tasks: [{ key: 'only', kind: 'noop' }] },
  });
  expect(submitted.status(), await submitted.text()).toBe(201);
  const id = (await submitted.json()).id;

  await page.goto(`/ops/operations/jobengine/jobs/${id}`);
  await hydrated(page);
  await expect(page.locator('.job-state')).toHaveAttribute('data-state', 'blocked');
  await expect(page.locator('section.explainer li[data-task="only"]')).toContainText(
    `the tenant quota of ${tenant} is exhausted: 0 concurrent leases of 0`,
  );

  // Lift it on the quotas page: both limits empty removes the quota.
  await page.goto('/ops/operations/jobengine/quotas');
  await hydrated(page);
  const row = page.locator(`tr[data-quota="tenant/${tenant}"]`);
  await row.getByRole('button', { name: 'Edit limits' }).click();
  await row.getByLabel('Concurrent leases').fill('');
  await row.getByRole('button', { name: 'Review' }).click();
  await row.locator('[data-confirm-quota]').click();
  await expect(page.locator('[data-toast="quota"]')).toBeVisible();

  // The embedded worker runs it now.
  await page.goto(`/ops/operations/jobengine/jobs/${id}`);
  await hydrated(page);
  await expect(page.locator('.job-state')).toHaveAttribute('data-state', 'succeeded', { timeout: 15_000 });
  await expect(page.locator('section.explainer li[data-task="only"]')).toHaveCount(0);
});

test('quota usage follows leases live', async ({ page, csrf }) => {
  const tenant = `usage-${Date.now().toString(36)}`;
  const set = await page.request.put(`/api/v1/quotas/tenant/${tenant}`, {
    headers: { 'X-CSRF-Token': csrf },
    data: { max_concurrent: 5, max_starts_per_minute: 100 },
  });
  expect(set.status(), await set.text()).toBe(200);

  await page.goto('/ops/operations/jobengine/quotas');
  await hydrated(page);
  const row = page.locator(`tr[data-quota="tenant/${tenant}"]`);
  const concurrent = row.locator('[data-usage="concurrent"] .usage');
  const starts = row.locator('[data-usage="starts"] .usage');
  await expect(concurrent).toHaveAttribute('data-used', '0');

  // A task of this tenant runs for 4 s: the page shows its lease, then none.
  const submitted = await page.request.post('/api/v1/jobs', {
    headers: { 'X-CSRF-Token': csrf },
    data: { name: `${tenant}-job`, tenant, tasks: [{ key: 'only', kind: 'sleep', payload: { ms: 4000 } }] },
  });
  expect(submitted.status(), await submitted.text()).toBe(201);
  await expect(concurrent).toHaveAttribute('data-used', '1', { timeout: 10_000 });
  await expect(starts).toHaveAttribute('data-used', '1');
  await expect(concurrent).toHaveAttribute('data-used', '0', { timeout: 15_000 });
});
