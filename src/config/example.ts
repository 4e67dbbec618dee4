// Renders config/writ.example.yaml from the schema, so the example can never drift from the code.
import { z } from 'zod';
import { configSchema } from './schema.ts';

interface JsonSchemaNode {
  type?: string | string[];
  description?: string;
  default?: unknown;
  properties?: Record<string, JsonSchemaNode>;
  required?: string[];
  enum?: unknown[];
  anyOf?: JsonSchemaNode[];
  minimum?: number;
  maximum?: number;
  pattern?: string;
}

function yamlScalar(value: unknown): string {
  // Plain only when YAML cannot read it as anything but this string.
  const plain =
    typeof value === 'string' &&
    /^[A-Za-z][A-Za-z0-9_.-]*$/.test(value) &&
    !/^(true|false|null|yes|no|on|off)$/i.test(value);
  return plain ? (value as string) : JSON.stringify(value);
}

function constraints(node: JsonSchemaNode): string {
  const parts: string[] = [];
  if (node.enum) parts.push(`one of ${node.enum.map((v) => String(v)).join(', ')}`);
  const safe = (n: number) => Math.abs(n) < 1e15;
  if (node.minimum !== undefined && node.maximum !== undefined && safe(node.minimum) && safe(node.maximum)) {
    parts.push(`${node.minimum}..${node.maximum}`);
  }
  return parts.length > 0 ? ` (${parts.join('; ')})` : '';
}

function render(node: JsonSchemaNode, indent: string, out: string[]): void {
  for (const [key, child] of Object.entries(node.properties ?? {})) {
    if (child.description) out.push(`${indent}# ${child.description}${constraints(child)}`);
    if (child.properties && child.default === undefined && !node.required?.includes(key)) {
      // An optional section (an attestor that is off unless configured): shown, but commented out.
      const inner: string[] = [];
      render(child, `${indent}  `, inner);
      out.push(`${indent}# ${key}:`);
      for (const line of inner)
        out.push(line.trimStart().startsWith('#') ? line : `${indent}  # ${line.trimStart()}`);
    } else if (child.properties) {
      const inner: string[] = [];
      render(child, `${indent}  `, inner);
      // A section whose every option is commented out would read as null: write it as an empty mapping.
      const empty = inner.every((line) => line.trimStart().startsWith('#'));
      out.push(`${indent}${key}:${empty ? ' {}' : ''}`);
      out.push(...inner);
    } else if (child.default !== undefined) {
      out.push(`${indent}${key}: ${yamlScalar(child.default)}`);
    } else {
      out.push(`${indent}# ${key}:`);
    }
  }
}

export function renderExampleConfig(): string {
  const schema = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchemaNode;
  const out = [
    '# Writ configuration: every option with its default. Generated from src/config/schema.ts by',
    '# `npm run gen:example-config`; a test fails when this file and the schema drift apart.',
    '# Copy to config/writ.yaml (or point WRIT_CONFIG at a file). Unknown keys are errors.',
    '',
  ];
  render(schema, '', out);
  return `${out.join('\n')}\n`;
}
