import { test, expect, hydrated } from './fixtures';

// The job detail page (issue #6): the "why isn't this running?" explainer
// names what holds each waiting task. The task kind is one no worker runs,
// so the job stays queued.

const KIND = 'e2e-unhandled';

test('the explainer names unmet dependencies and a kind no node runs', async ({ page, csrf }) => {
  const name = `explain-${Date.now().toString(36)}`;
  const response = await page.request.post('/api/v1/jobs', {
    headers: { 'X-CSRF-Token': csrf },
    data: {
      name,
      tenant: 'default',
      queue: 'default',
      tasks: [
        { key: 'first', kind: KIND, payload: {} },
        { key: 'second', kind: KIND, payload: {}, depends_on: ['first'] },
      ],
    },
  });
  expect(response.status(), await response.text()).toBe(201);
  const id = (await response.json()).id;

  await page.goto(`/ops/operations/jobengine/jobs/${id}`);
  await hydrated(page);
  const explainer = page.locator('section.explainer');
  await expect(explainer.getByRole('heading', { name: "Why isn't this running?" })).toBeVisible();
  await expect(explainer.locator('li[data-task="first"]')).toContainText(`no node declares kind ${KIND}`);
  await expect(explainer.locator('li[data-task="second"]')).toContainText('waits for first (ready)');
  // Nothing failed: no task offers a retry.
  await expect(page.getByRole('button', { name: 'Retry task' })).toHaveCount(0);
});
