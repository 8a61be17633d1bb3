// Lint: ESLint's and typescript-eslint's recommended rules. Formatting is Prettier's job.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'test/fixtures/', '.tap/', 'dist/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      'no-control-regex': 'off',
    },
  },
  {
    // node:http's values come from src/core/node-http.ts (an ES import of it costs 13 MB RSS).
    files: ['src/**/*.ts'],
    ignores: ['src/core/node-http.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: [
            { name: 'node:http', message: "Take node:http's values from src/core/node-http.ts.", allowTypeImports: true },
            { name: 'http', message: "Take node:http's values from src/core/node-http.ts.", allowTypeImports: true },
          ],
        },
      ],
    },
  },
);
