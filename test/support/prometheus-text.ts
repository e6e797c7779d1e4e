/**
 * A strict reader of Prometheus' text exposition format (0.0.4), for tests
 * of /metrics' text where part of it is not written by prom-client: names
 * and label syntax, escapes, each family's HELP and TYPE once and before
 * its samples, a family's samples together, no series twice. Throws on the
 * first thing a Prometheus server would refuse, naming the line.
 */

export interface PrometheusSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface PrometheusFamily {
  readonly help: string | null;
  readonly type: string | null;
  readonly samples: PrometheusSample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
/** Sample names a histogram's or summary's family holds besides its own. */
const SUFFIXES = ['_bucket', '_sum', '_count'];

/** `text`'s families by name, in their order, each checked as above. */
export function parsePrometheusText(text: string): Map<string, PrometheusFamily> {
  const families = new Map<string, PrometheusFamily & { help: string | null; type: string | null }>();
  const series = new Set<string>();
  let current: string | null = null;
  const fail = (at: number, why: string): never => {
    throw new Error(`line ${at + 1}: ${why}`);
  };
  const family = (name: string, at: number): PrometheusFamily & { help: string | null; type: string | null } => {
    let f = families.get(name);
    if (f === undefined) {
      f = { help: null, type: null, samples: [] };
      families.set(name, f);
    } else if (current !== name) {
      fail(at, `${name} again after another family`);
    }
    current = name;
    return f;
  };
  const lines = text.split('\n');
  if (lines.pop() !== '') fail(lines.length, 'the text does not end with a newline');
  for (const [at, line] of lines.entries()) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta) {
      const [, kind, name, rest] = meta;
      if (!METRIC_NAME.test(name)) fail(at, `bad metric name ${name}`);
      const f = family(name, at);
      if (kind === 'HELP') {
        if (f.help !== null) fail(at, `a second HELP for ${name}`);
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ''))) fail(at, `bad escape in ${name}'s HELP`);
        f.help = rest;
      } else {
        if (f.type !== null) fail(at, `a second TYPE for ${name}`);
        if (f.samples.length > 0) fail(at, `${name}'s TYPE after its samples`);
        if (!TYPES.has(rest)) fail(at, `unknown type ${rest}`);
        f.type = rest;
      }
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([^\s{]+)(?:\{(.*)\})? (\S+)(?: -?\d+)?$/.exec(line);
    if (!m) fail(at, `not a sample: ${line}`);
    const [, name, labelText = '', valueText] = m as RegExpExecArray;
    if (!METRIC_NAME.test(name)) fail(at, `bad metric name ${name}`);
    const labels: Record<string, string> = {};
    let rest = labelText;
    while (rest !== '') {
      const pair = /^([^=]+)="((?:[^"\\\n]|\\[\\"n])*)"(,?)/.exec(rest);
      if (!pair) fail(at, `bad labels {${labelText}}`);
      const [whole, label, raw, comma] = pair as RegExpExecArray;
      if (!LABEL_NAME.test(label)) fail(at, `bad label name ${label}`);
      if (label in labels) fail(at, `label ${label} twice`);
      labels[label] = raw.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      rest = rest.slice(whole.length);
      if (comma === '' && rest !== '') fail(at, `bad labels {${labelText}}`);
    }
    const value = valueText === 'Nan' || valueText === 'NaN' ? NaN : valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : Number(valueText);
    if (Number.isNaN(value) && !/^Na[Nn]$/.test(valueText)) fail(at, `bad value ${valueText}`);
    const owner = current !== null && (name === current || SUFFIXES.some((s) => name === current + s)) ? current : name;
    const f = family(owner, at);
    const key = `${name}{${Object.entries(labels).sort().map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}}`;
    if (series.has(key)) fail(at, `series ${key} twice`);
    series.add(key);
    f.samples.push({ name, labels, value });
  }
  return families;
}
