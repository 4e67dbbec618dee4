// Writes config/writ.example.yaml from the configuration schema.
import { writeFileSync } from 'node:fs';
import { renderExampleConfig } from '../src/config/example.ts';

writeFileSync(new URL('../config/writ.example.yaml', import.meta.url), renderExampleConfig());
