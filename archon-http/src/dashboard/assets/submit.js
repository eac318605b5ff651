// Submitting a job from a form: a command, a script or a Docker image, with
// resources, timeout, retries and an optional cron schedule. The body is the
// spec format (JSON of a job file); when the API refuses it, its problem is
// shown next to the field it names.

import { h, fill, link, toast } from './dom.js';
import * as api from './api.js';

/** Which input shows an error for the API's `field` (`schedule.cron` → cron). */
const FIELD_INPUT = {
  name: 'name', command: 'command', script: 'script', interpreter: 'interpreter',
  'docker.image': 'image', 'docker.command': 'docker_command', docker: 'image',
  cpu: 'cpu', memory: 'memory', timeout: 'timeout', max_retries: 'max_retries',
  'schedule.cron': 'cron', 'schedule.timezone': 'timezone', schedule: 'cron',
};

function field(name, label, input, hint) {
  return h('div', { class: 'field', 'data-field': name },
    h('label', { for: `f-${name}` }, label),
    input,
    hint ? h('small', { class: 'hint', id: `f-${name}-hint` }, hint) : null,
    h('small', { class: 'field-error', id: `f-${name}-error`, 'data-for': name, role: 'alert' }));
}

function input(name, attrs = {}) {
  return h('input', { id: `f-${name}`, name, 'aria-describedby': `f-${name}-hint f-${name}-error`, ...attrs });
}

/** The spec the form describes (empty fields left out). */
export function draft(form) {
  const v = (name) => (form.elements[name] ? form.elements[name].value.trim() : '');
  const spec = {};
  if (v('name')) spec.name = v('name');
  const kind = v('kind');
  if (kind === 'command') spec.command = form.elements.command.value;
  if (kind === 'script') {
    spec.script = form.elements.script.value;
    if (v('interpreter')) spec.interpreter = v('interpreter');
  }
  if (kind === 'docker') {
    spec.docker = { image: v('image') };
    if (v('docker_command')) spec.docker.command = v('docker_command').split(/\s+/);
  }
  if (v('cpu')) spec.cpu = v('cpu');
  if (v('memory')) spec.memory = v('memory');
  if (v('timeout')) spec.timeout = v('timeout');
  if (v('max_retries')) spec.max_retries = Number(v('max_retries'));
  if (v('cron')) {
    spec.schedule = { cron: v('cron') };
    if (v('timezone')) spec.schedule.timezone = v('timezone');
  }
  return spec;
}

export async function page() {
  const result = h('div', { id: 'submit-result', role: 'status', 'aria-live': 'polite' });
  const formError = h('p', { class: 'field-error form-error', id: 'form-error', role: 'alert' });
  const kind = h('select', { id: 'f-kind', name: 'kind' },
    h('option', { value: 'command' }, 'Shell command'), h('option', { value: 'script' }, 'Script'),
    h('option', { value: 'docker' }, 'Docker image'));
  const groups = {
    command: h('fieldset', { class: 'kind-command' }, h('legend', {}, 'Command'),
      field('command', 'Command line (run by sh -c)', h('textarea', { id: 'f-command', name: 'command', rows: 3, spellcheck: 'false', placeholder: 'echo hello' }))),
    script: h('fieldset', { class: 'kind-script', hidden: true }, h('legend', {}, 'Script'),
      field('interpreter', 'Interpreter', input('interpreter', { placeholder: 'sh (default)' })),
      field('script', 'Script', h('textarea', { id: 'f-script', name: 'script', rows: 6, spellcheck: 'false' }))),
    docker: h('fieldset', { class: 'kind-docker', hidden: true }, h('legend', {}, 'Container'),
      field('image', 'Image', input('image', { placeholder: 'busybox:1.36' })),
      field('docker_command', 'Command (optional)', input('docker_command', { placeholder: "the image's" }))),
  };
  kind.addEventListener('change', () => {
    for (const [k, g] of Object.entries(groups)) g.hidden = k !== kind.value;
  });
  const form = h('form', { id: 'submit-form', novalidate: true },
    field('name', 'Name', input('name', { placeholder: 'nightly-report', autocomplete: 'off' })),
    field('kind', 'Runs', kind),
    Object.values(groups),
    h('fieldset', {}, h('legend', {}, 'Resources and limits'),
      h('div', { class: 'row' },
        field('cpu', 'CPU', input('cpu', { placeholder: '500m or 2' }), 'millicores (500m) or cores (2)'),
        field('memory', 'Memory', input('memory', { placeholder: '256MiB' }), 'e.g. 256MiB, 1GiB'),
        field('timeout', 'Timeout', input('timeout', { placeholder: '30s' }), 'e.g. 30s, 5m, 1h'),
        field('max_retries', 'Retries', input('max_retries', { type: 'number', min: 0, step: 1, inputmode: 'numeric', placeholder: '0' })))),
    h('fieldset', {}, h('legend', {}, 'Schedule (optional)'),
      h('div', { class: 'row' },
        field('cron', 'Cron', input('cron', { placeholder: '0 */15 * * * *' }), 'with seconds; leave empty to run once now'),
        field('timezone', 'Time zone', input('timezone', { placeholder: 'UTC' })))),
    formError,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'submit-button' }, 'Submit job')));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    fill(result);
    try {
      const submitted = await api.post('/api/v1/jobs', draft(form));
      fill(result, h('p', { class: 'ok' }, submitted.duplicate ? 'Already submitted as ' : 'Submitted ',
        link(`#/jobs/${submitted.job}`, submitted.job, { id: 'submitted-job' }),
        submitted.run ? [' — first run ', link(`#/runs/${submitted.run}`, submitted.run, { id: 'submitted-run' })] : ''));
      toast(`Submitted ${submitted.job}`);
    } catch (err) {
      if (!(err instanceof api.ApiError)) throw err;
      const name = FIELD_INPUT[err.field] || FIELD_INPUT[(err.field || '').split('.')[0]];
      const target = name && form.querySelector(`.field-error[data-for="${name}"]`);
      if (target && !target.closest('[hidden]')) {
        target.textContent = err.message;
        const control = form.elements[name];
        if (control) { control.setAttribute('aria-invalid', 'true'); control.focus(); }
      } else {
        formError.textContent = err.field ? `${err.field}: ${err.message}` : err.message;
      }
    }
  });
  const el = h('div', { class: 'page' }, h('h1', {}, 'Submit a job'), h('section', { class: 'card' }, form), result);
  return { title: 'Submit', el };
}
