import { test, expect, hydrated, ADMIN, VIEWER } from './fixtures';

// Identity and access in the browser (SPEC §6): signing in brings the
// operator back to the page they asked for; what a user may not do is
// disabled with the reason; signing out ends the session.

test.describe('signed out', () => {
  test.use({ account: null });

  test('a console page sends you to sign in and back, query and fragment kept', async ({ page }) => {
    const wanted = '/ops/operations/jobengine/jobs/42?tab=attempts&x=a%20b#attempt-2';
    await page.goto(wanted);
    await expect(page).toHaveURL(/\/login\?next=/);
    expect(new URL(page.url()).hash).toBe('#attempt-2');
    await expect(page.locator('h1')).toHaveText('Sign in to Switchyard');
    await hydrated(page);

    await page.getByLabel('Username').fill(ADMIN.username);
    await page.getByLabel('Password').fill(ADMIN.password);
    await page.getByRole('button', { name: 'Sign in' }).click();

    await expect(page).toHaveURL(new URL(wanted, page.url()).href);
    await expect(page.locator('h1')).toHaveText('Job 42');
    await expect(page.locator('.signed-in .who')).toHaveText('admin');
  });

  test('until the console has loaded, the sign-in form sends nothing', async ({ page, errors }) => {
    // The wasm never arrives (a slow link, a blocked asset).
    await page.route('**/pkg/*.wasm', (route) => route.abort());
    await page.goto('/login?next=/ops/access');
    const form = page.locator('form.login-form');
    await expect(form).toHaveAttribute('method', 'post');
    await expect(page.getByRole('button', { name: 'Sign in' })).toBeDisabled();
    await page.getByLabel('Username').fill(ADMIN.username);
    await page.getByLabel('Password').fill(ADMIN.password);
    // Enter on a form whose button is disabled submits nothing: no
    // navigation comes, and the address keeps no password.
    const navigation = page.waitForEvent('framenavigated', { timeout: 1_500 }).then(
      () => true,
      () => false,
    );
    await page.getByLabel('Password').press('Enter');
    expect(await navigation, 'the form was sent').toBe(false);
    await expect(page.locator('h1')).toHaveText('Sign in to Switchyard');
    expect(page.url()).not.toContain(encodeURIComponent(ADMIN.password));
    expect(new URL(page.url()).search).toBe('?next=/ops/access');
    // The aborted wasm is the only error (the loader's "Failed to fetch").
    const others = errors.filter((e) => !e.includes('Failed to fetch') && !e.includes('Failed to load resource'));
    errors.splice(0, errors.length, ...others);
  });

  test('a wrong password is refused with a clear message', async ({ page, errors }) => {
    await page.goto('/login');
    await hydrated(page);
    await page.getByLabel('Username').fill(VIEWER.username);
    await page.getByLabel('Password').fill('not the password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page.getByRole('alert')).toHaveText('wrong username or password');
    await expect(page).toHaveURL(/\/login$/);
    // Chromium reports the refused sign-in's 401 as a console error: here
    // that status is the point. Exactly that one is expected.
    const refused = errors.filter((e) => e.includes('status of 401'));
    expect(refused).toHaveLength(1);
    errors.splice(0, errors.length, ...errors.filter((e) => !e.includes('status of 401')));
  });
});

test('an admin creates and revokes a token, then signs out', async ({ page }) => {
  await page.goto('/ops/access');
  await hydrated(page);
  await expect(page.locator('h1')).toHaveText('Access');
  await expect(page.locator('table.users tr[data-user="viewer"]')).toContainText('runs.read');

  const name = `e2e-${Date.now()}`;
  await page.getByLabel('Name').fill(name);
  await page.getByLabel('Tenants (comma-separated, * for every tenant)').fill('default');
  await page.getByRole('button', { name: 'Create token' }).click();
  await expect(page.locator('.token-secret .secret')).toHaveText(/^sya_[0-9a-f]{64}$/);

  const row = page.locator(`table.tokens tr[data-token="${name}"]`);
  await expect(row).toContainText('runs.read');
  await row.getByRole('button', { name: 'Revoke' }).click();
  // Revoking cannot be undone: the token's name is typed first (SPEC §4).
  const confirm = row.getByRole('button', { name: 'Confirm: Revoke' });
  await expect(confirm).toBeDisabled();
  await row.getByLabel(`Type ${name} to confirm`).fill('not-the-name');
  await expect(confirm).toBeDisabled();
  await row.getByLabel(`Type ${name} to confirm`).fill(name);
  await confirm.click();
  await expect(row.getByRole('status')).toHaveText('Revoked.');

  // The revoked token is refused by the API.
  const secret = await page.locator('.token-secret .secret').innerText();
  const refused = await page.request.get('/api/v1/jobs', {
    headers: { Authorization: `Bearer ${secret}` },
  });
  expect(refused.status()).toBe(401);

  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page).toHaveURL(/\/login$/);
  await page.goto('/ops');
  await expect(page).toHaveURL(/\/login\?next=%2Fops$/);
});

test.describe('a read-only user', () => {
  test.use({ account: VIEWER });

  test('sees actions disabled with the reason', async ({ page, playwright, baseURL }) => {
    // An admin submits a job that runs long enough to be cancellable.
    const admin = await playwright.request.newContext({ baseURL });
    const login = await admin.post('/api/v1/auth/login', { data: ADMIN });
    const csrf = (await login.json()).csrf_token;
    const submitted = await admin.post('/api/v1/jobs', {
      data: { name: 'viewer-sees', tasks: [{ key: 'nap', kind: 'sleep', payload: { ms: 60000 } }] },
      headers: { 'X-CSRF-Token': csrf },
    });
    expect(submitted.status()).toBe(201);
    const id = (await submitted.json()).id;

    await page.goto(`/ops/operations/jobengine/jobs/${id}`);
    await hydrated(page);
    const cancel = page.locator('[data-action="Cancel job"]');
    await expect(cancel.getByRole('button', { name: 'Cancel job' })).toBeDisabled();
    await expect(cancel.locator('.disabled-reason')).toHaveText('Your account lacks the runs.manage scope.');

    // The server refuses as well, whatever the page shows.
    const viewerCsrf = (await (await page.request.get('/api/v1/auth/me')).json()).csrf_token;
    const refused = await page.request.post(`/api/v1/jobs/${id}/cancel`, {
      headers: { 'X-CSRF-Token': viewerCsrf },
    });
    expect(refused.status()).toBe(403);
    expect((await refused.json()).code).toBe('forbidden');

    await page.goto('/ops/access');
    await expect(page.locator('.empty-state')).toContainText('lacks the admin scope');
    await expect(page.getByRole('button', { name: 'Create token' })).toBeDisabled();

    // Clean up: the admin cancels the job.
    const cancelled = await admin.post(`/api/v1/jobs/${id}/cancel`, { headers: { 'X-CSRF-Token': csrf } });
    expect(cancelled.status()).toBe(200);
    await admin.dispose();
  });
});
