import { test as base, expect, Page } from '@playwright/test';

/** The accounts start-server.sh creates. */
export const ADMIN = { username: 'admin', password: 'e2e-admin-password' };
export const VIEWER = { username: 'viewer', password: 'e2e-viewer-password' };
export type Account = { username: string; password: string };

type Fixtures = {
  /** Who the page is signed in as before the test starts (`null`: nobody). */
  account: Account | null;
  /** The page's session CSRF token ('' when not signed in). */
  csrf: string;
  errors: string[];
};

/** Signs `page`'s browser context in through the API (the cookie is shared
 *  with the page) and returns the session's CSRF token. */
export async function signIn(page: Page, account: Account): Promise<string> {
  const response = await page.request.post('/api/v1/auth/login', { data: account });
  expect(response.status(), `sign in as ${account.username}`).toBe(200);
  return (await response.json()).csrf_token;
}

// Every spec uses this `test`: it signs the page in (as `account`, the
// admin unless a spec says otherwise), records console errors and uncaught
// page errors (hydration mismatches surface as these) and fails the spec if
// any appeared.
export const test = base.extend<Fixtures>({
  account: [ADMIN, { option: true }],
  csrf: [
    async ({ page, account }, use) => {
      await use(account ? await signIn(page, account) : '');
    },
    { auto: true },
  ],
  errors: [
    async ({ page }, use) => {
      const errors: string[] = [];
      page.on('console', (msg) => {
        if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
      });
      page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
      await use(errors);
      expect(errors, 'console and page errors').toEqual([]);
    },
    { auto: true },
  ],
});

export { expect };

/** Waits until the wasm has hydrated the page (the app sets this attribute). */
export async function hydrated(page: Page) {
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
}
