#!/usr/bin/env node
// Launcher: runs the TypeScript sources through tsx so `npx gwmo` works right after `npm install`.
import { register } from 'tsx/esm/api';
register();
await import('../src/cli/main.ts');
