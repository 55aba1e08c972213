// The AsyncAPI contract (docs/mediabar-asyncapi.yaml), loaded for tests, and a small JSON
// Schema validator for the keywords it uses, so tests can check frames against it.

import { readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

/** clients/mediabar, found from wherever the compiled test runs. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || !readFileSync(join(dir, 'package.json'), 'utf8').includes('"@wfm/mediabar"')) {
    const up = dirname(dir);
    if (up === dir) throw new Error('clients/mediabar not found');
    dir = up;
  }
  return dir;
}

export const CONTRACT_PATH = join(packageRoot(), '..', '..', 'docs', 'mediabar-asyncapi.yaml');

type Schema = Record<string, any>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const contract: Record<string, any> = parse(readFileSync(CONTRACT_PATH, 'utf8'));
export const schemas: Record<string, Schema> = contract.components.schemas;

function resolveRef(ref: string): Schema {
  const prefix = '#/components/schemas/';
  if (!ref.startsWith(prefix)) throw new Error(`unsupported $ref ${ref}`);
  const schema = schemas[ref.slice(prefix.length)];
  if (!schema) throw new Error(`unknown $ref ${ref}`);
  return schema;
}

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

const KNOWN = new Set([
  '$ref', 'oneOf', 'type', 'const', 'enum', 'required', 'properties', 'additionalProperties',
  'minLength', 'maxLength', 'minItems', 'items', 'pattern', 'description', 'title',
]);

/** The ways `value` breaks `schema` (empty when it conforms). */
export function violations(schema: Schema, value: unknown, path = '$'): string[] {
  for (const key of Object.keys(schema)) if (!KNOWN.has(key)) throw new Error(`unsupported keyword ${key} at ${path}`);
  if (schema.$ref) return violations(resolveRef(schema.$ref), value, path);
  const out: string[] = [];
  if (schema.oneOf) {
    const matching = (schema.oneOf as Schema[]).filter((s) => violations(s, value, path).length === 0).length;
    if (matching !== 1) out.push(`${path}: matches ${matching} of oneOf, not exactly 1`);
  }
  if (schema.type && typeOf(value) !== schema.type && !(schema.type === 'number' && typeOf(value) === 'integer')) {
    out.push(`${path}: is ${typeOf(value)}, not ${schema.type}`);
    return out;
  }
  if ('const' in schema && value !== schema.const) out.push(`${path}: is not ${JSON.stringify(schema.const)}`);
  if (schema.enum && !schema.enum.includes(value)) out.push(`${path}: ${JSON.stringify(value)} is not in the enum`);
  if (typeof value === 'string') {
    if (schema.minLength !== undefined && [...value].length < schema.minLength) out.push(`${path}: shorter than ${schema.minLength}`);
    if (schema.maxLength !== undefined && [...value].length > schema.maxLength) out.push(`${path}: longer than ${schema.maxLength}`);
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) out.push(`${path}: does not match ${schema.pattern}`);
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) out.push(`${path}: fewer than ${schema.minItems} items`);
    if (schema.items) value.forEach((item, i) => out.push(...violations(schema.items, item, `${path}[${i}]`)));
  }
  if (typeOf(value) === 'object' && (schema.properties || schema.required || 'additionalProperties' in schema)) {
    const object = value as Record<string, unknown>;
    for (const key of schema.required ?? []) if (!(key in object)) out.push(`${path}: ${key} is missing`);
    for (const [key, entry] of Object.entries(object)) {
      const property = schema.properties?.[key];
      if (property) out.push(...violations(property, entry, `${path}.${key}`));
      else if (schema.additionalProperties === false) out.push(`${path}: ${key} is not allowed`);
      else if (typeof schema.additionalProperties === 'object') out.push(...violations(schema.additionalProperties, entry, `${path}.${key}`));
    }
  }
  return out;
}

/** Throws when `value` breaks the contract's schema `name`. */
export function assertConforms(name: string, value: unknown): void {
  const schema = schemas[name];
  if (!schema) throw new Error(`no schema ${name}`);
  const found = violations(schema, value);
  if (found.length > 0) throw new Error(`${JSON.stringify(value)} breaks ${name}:\n  ${found.join('\n  ')}`);
}

/** Every message of the contract with its examples' payloads. */
export function messages(): Array<{ key: string; name: string; payloadRef: string; examples: Array<{ name: string; payload: unknown }> }> {
  return Object.entries(contract.components.messages as Record<string, Schema>).map(([key, message]) => ({
    key,
    name: message.name,
    payloadRef: message.payload.$ref,
    examples: message.examples ?? [],
  }));
}
