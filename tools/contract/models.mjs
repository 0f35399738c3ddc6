// Generates Java and Go models from the AsyncAPI document with Modelina (pinned in
// package.json): node models.mjs <asyncapi.json> <out dir>. Writes <out>/java and <out>/go,
// and prints one line per model: "<language> <name>".
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { JavaFileGenerator, GoFileGenerator, GO_COMMON_PRESET } from '@asyncapi/modelina';

const [documentPath, out] = process.argv.slice(2);
const document = JSON.parse(readFileSync(documentPath, 'utf8'));

// Each message's headers as a JSON Schema of its own, so that the dead letter (whose value is
// the original bytes) and every other message have a model of what a consumer reads.
const headerSchemas = Object.values(document.components.messages).map((message) => {
  const name = message.headers.$ref.split('/').pop();
  return { $schema: 'http://json-schema.org/draft-07/schema#', ...document.components.schemas[name] };
});

const java = new JavaFileGenerator({ collectionType: 'List' });
const go = new GoFileGenerator({
  presets: [{ preset: GO_COMMON_PRESET, options: { addJsonTag: true } }],
});
const targets = [
  ['java', java, join(out, 'java'), { packageName: 'com.autotopup.contract' }],
  ['go', go, join(out, 'go'), { packageName: 'contract' }],
];
// Every message needs a model of its value (unless the value is bytes: the dead letter) and
// one of its headers; no name may be made of a spelled-out dash (CreditMinusIssued).
const wanted = Object.values(document.components.messages).flatMap((message) => {
  const payload = document.components.schemas[message.payload.$ref.split('/').pop()];
  const names = [message.headers.$ref.split('/').pop()];
  return payload.type === 'object' ? [message.name, ...names] : names;
});
const problems = [];
for (const [language, generator, folder, options] of targets) {
  const made = new Set();
  for (const input of [document, ...headerSchemas]) {
    for (const model of await generator.generateToFiles(input, folder, options, true)) {
      made.add(model.modelName);
      console.log(`${language} ${model.modelName}`);
    }
  }
  const missing = wanted.filter((name) => !made.has(name));
  if (missing.length) problems.push(`${language}: no model for ${missing.join(', ')}`);
  const spelled = [...made].filter((name) => /minus/i.test(name));
  if (spelled.length) problems.push(`${language}: names with a spelled-out dash: ${spelled.join(', ')}`);
  const anonymous = [...made].filter((name) => /^Anonym/.test(name));
  if (anonymous.length) problems.push(`${language}: unnamed models: ${anonymous.join(', ')}`);
}
if (problems.length) {
  console.error(problems.map((p) => `contract-models: ${p}`).join('\n'));
  process.exit(1);
}
