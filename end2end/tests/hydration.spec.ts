import { test, expect, hydrated } from './fixtures';

test('the navigation toggle responds once hydrated', async ({ page }) => {
  await page.goto('/ops/operations/jobengine');
  await hydrated(page);
  const toggle = page.getByRole('button', { name: 'Hide navigation' });
  await expect(toggle).toHaveAttribute('aria-expanded', 'true');
  await expect(page.getByRole('navigation', { name: 'Ops navigation' })).toBeVisible();
  await toggle.click();
  const reopen = page.getByRole('button', { name: 'Show navigation' });
  await expect(reopen).toHaveAttribute('aria-expanded', 'false');
  await expect(page.getByRole('navigation', { name: 'Ops navigation' })).toBeHidden();
  await reopen.click();
  await expect(page.getByRole('navigation', { name: 'Ops navigation' })).toBeVisible();
});

test('side navigation links navigate in the app without a reload', async ({ page }) => {
  await page.goto('/ops');
  await hydrated(page);
  await page.evaluate(() => ((window as any).__noReload = true));
  const nav = page.getByRole('navigation', { name: 'Ops navigation' });
  await nav.getByRole('link', { name: 'Quotas' }).click();
  await expect(page).toHaveURL(/\/ops\/operations\/jobengine\/quotas$/);
  await expect(page).toHaveTitle('Quotas · Switchyard');
  await expect(nav.getByRole('link', { name: 'Quotas' })).toHaveAttribute('aria-current', 'page');
  await nav.getByRole('link', { name: 'Baselines' }).click();
  await expect(page.locator('h1')).toHaveText('Baselines');
  expect(await page.evaluate(() => (window as any).__noReload)).toBe(true);
});

test('the site assets are served by the binary', async ({ request }) => {
  for (const path of ['/pkg/switchyard.js', '/pkg/switchyard.wasm', '/pkg/switchyard.css', '/favicon.svg']) {
    const response = await request.get(path);
    expect(response.status(), path).toBe(200);
  }
});

test('in-app navigation to pages that read the kernel works under CSRF (reads are GETs)', async ({ page }) => {
  await page.goto('/ops/scanner-ops');
  await hydrated(page);
  await page.evaluate(() => ((window as any).__noReload = true));
  const nav = page.getByRole('navigation', { name: 'Ops navigation' });
  for (const [link, title] of [
    ['Operator snapshot', 'Operator snapshot'],
    ['Jobs', 'Jobs'],
    ['Quotas', 'Quotas'],
    ['JobEngine', 'JobEngine'],
    ['Access', 'Access'],
  ]) {
    await nav.getByRole('link', { name: link, exact: true }).click();
    await expect(page.locator('h1')).toHaveText(title);
    await expect(page.locator('.error-state')).toHaveCount(0);
  }
  expect(await page.evaluate(() => (window as any).__noReload)).toBe(true);
});
