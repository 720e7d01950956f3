import { test, expect, hydrated } from './fixtures';

// One case per legacy pattern of SPEC §3: [legacy path, canonical path, title].
const aliases: [string, string, string][] = [
  ['/ops/jobengine/jobs', '/ops/operations/jobengine/jobs', 'Jobs'],
  ['/ops/scheduler/runs', '/ops/operations/scheduler/runs', 'Runs'],
  ['/ops/scanner', '/ops/scanner-ops', 'Scanner Ops'],
  ['/ops/scanner/baselines', '/ops/scanner-ops/baselines', 'Baselines'],
  ['/platform-ops/jobengine/quotas', '/ops/operations/jobengine/quotas', 'Quotas'],
  ['/platform-ops/scheduler/workers', '/ops/operations/scheduler/workers', 'Workers'],
  ['/platform-ops/scanner/analyzers', '/ops/scanner-ops/analyzers', 'Analyzers'],
  ['/platform/ops/jobengine/jobs/j-1/dag', '/ops/operations/jobengine/jobs/j-1/dag', 'DAG of job j-1'],
  ['/platform/ops/scheduler/runs/r-2/stream', '/ops/operations/scheduler/runs/r-2/stream', 'Run r-2'],
  ['/platform/ops/dead-letter/queue', '/ops/operations/dead-letter/queue', 'Dead-letter queue'],
];

const query = '?state=failed&q=disk%20full';
const fragment = '#row-3';

for (const [legacy, canonical, title] of aliases) {
  test(`full load of ${legacy} is redirected with 308`, async ({ page }) => {
    const response = await page.goto(legacy + query + fragment);
    const first = await response!.request().redirectedFrom()!.response();
    expect(first!.status()).toBe(308);
    expect(response!.status()).toBe(200);
    expect(page.url()).toBe(new URL(canonical + query + fragment, page.url()).href);
    await expect(page).toHaveTitle(`${title} · Switchyard`);
  });

  test(`in-app navigation to ${legacy} is redirected by the router`, async ({ page }) => {
    await page.goto('/ops');
    await hydrated(page);
    // A marker on window survives client-side navigation, not a page load.
    await page.evaluate(() => ((window as any).__noReload = true));
    // An old bookmark-style link inside the page, as an in-app link would be.
    await page.evaluate((href) => {
      const a = document.createElement('a');
      a.href = href;
      a.id = 'legacy-link';
      a.textContent = 'old link';
      document.querySelector('main')!.appendChild(a);
    }, legacy + query + fragment);
    await page.click('#legacy-link');
    await expect(page).toHaveURL(new URL(canonical + query + fragment, page.url()).href);
    await expect(page.locator('h1')).toHaveText(title);
    expect(await page.evaluate(() => (window as any).__noReload)).toBe(true);
  });
}
