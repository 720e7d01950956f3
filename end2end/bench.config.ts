import base from './playwright.config';
import { defineConfig } from '@playwright/test';

// Browser benchmarks (docs/benchmarks.md): they print figures and assert
// only that what they measure rendered. Not part of the test run:
//   cd end2end && npx playwright test -c bench.config.ts
export default defineConfig({
  ...base,
  testDir: './bench',
  timeout: 300_000,
  fullyParallel: false,
  workers: 1,
});
