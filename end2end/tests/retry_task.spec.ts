import { test, expect, hydrated } from './fixtures';

// Open a failing task, read its log, retry it, see it succeed (issue #6).
// The task fails the first time it runs and succeeds afterwards: it leaves
// a marker file behind on its first run.

test('a failed task: read its log, retry it, and it succeeds', async ({ page, csrf }) => {
  const marker = `/tmp/switchyard-e2e-retry-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
  const script = `if [ -f ${marker} ]; then echo second time lucky; else touch ${marker}; echo boom on the first run >&2; exit 3; fi`;
  const submitted = await page.request.post('/api/v1/jobs', {
    headers: { 'X-CSRF-Token': csrf },
    data: {
      name: 'retry-me',
      tasks: [{ key: 'flaky', kind: 'exec', payload: { cmd: 'sh', args: ['-c', script] }, max_attempts: 1 }],
    },
  });
  expect(submitted.status(), await submitted.text()).toBe(201);
  const id = (await submitted.json()).id;

  await page.goto(`/ops/operations/jobengine/jobs/${id}`);
  await hydrated(page);
  const task = page.locator('table.tasks tr[data-task="flaky"]');
  await expect(task.locator('.state')).toHaveAttribute('data-state', 'failed', { timeout: 15_000 });
  await expect(page.locator('.job-state')).toHaveAttribute('data-state', 'failed');

  // The failed attempt's log says why.
  const attempt = page.locator('table.attempts tr[data-task="flaky"]').first();
  await attempt.getByRole('link', { name: 'Log' }).click();
  await expect(page).toHaveURL(/\?attempt=\d+$/);
  await expect(page.locator('section.attempt-log .log')).toContainText('boom on the first run');

  // Retry the task: a new attempt runs and succeeds, live.
  await task.getByRole('button', { name: 'Retry task' }).click();
  await expect(task.locator('.state')).toHaveAttribute('data-state', 'succeeded', { timeout: 15_000 });
  await expect(page.locator('.job-state')).toHaveAttribute('data-state', 'succeeded');
  await expect(page.locator('table.attempts tr[data-task="flaky"]')).toHaveCount(2);
});
