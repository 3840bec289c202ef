// atoll's web page: reads /ui/api/ and renders it. Plain DOM, no framework, no build step.
// Every string from the registry goes in through textContent, never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
const state = { summary: null, summaryReady: null, skew: 0, q: '', next: null, loading: null, seq: 0 };

// ---- helpers -----------------------------------------------------------------------------

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'on') for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat(Infinity)) if (k !== null && k !== undefined) e.append(k);
  return e;
}

function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
}

// A time relative to the server's clock: "5 min ago", or "in 5 min" for one to come.
function ago(t) {
  const d = Math.round(Date.now() / 1000 + state.skew - t), s = Math.abs(d);
  if (s < 60) return d >= 0 ? 'just now' : 'in under a minute';
  const [n, u] = s < 3600 ? [s / 60, 'min'] : s < 86400 ? [s / 3600, 'h'] : [s / 86400, 'd'];
  return d >= 0 ? Math.floor(n) + ' ' + u + ' ago' : 'in ' + Math.floor(n) + ' ' + u;
}

function when(t, none) {
  if (!t) return document.createTextNode(none);
  const d = new Date(t * 1000);
  return el('time', { datetime: d.toISOString(), title: d.toLocaleString(), text: ago(t) });
}

const KINDS = {
  'application/vnd.oci.image.index.v1+json': 'OCI index',
  'application/vnd.oci.image.manifest.v1+json': 'OCI image',
  'application/vnd.docker.distribution.manifest.list.v2+json': 'Docker manifest list',
  'application/vnd.docker.distribution.manifest.v2+json': 'Docker image',
  'application/vnd.docker.distribution.manifest.v1+prettyjws': 'Docker schema 1',
};

function artifactLabel(type) {
  const t = (type || '').toLowerCase();
  if (t.includes('sig')) return 'signature';
  if (t.includes('spdx') || t.includes('cyclonedx') || t.includes('sbom')) return 'SBOM';
  if (t.includes('in-toto') || t.includes('attest') || t.includes('provenance')) return 'attestation';
  return 'artifact';
}

async function api(path, signal) {
  const res = await fetch(path, { credentials: 'same-origin', signal });
  if (res.status === 401) throw new Error('This registry needs a login: reload the page to sign in.');
  if (!res.ok) {
    let msg = res.status + ' ' + res.statusText;
    try { msg = (await res.json()).errors[0].message; } catch (_) { /* not the envelope */ }
    throw new Error(msg);
  }
  return res.json();
}

function say(msg) { $('status').textContent = msg; }

// ---- overview ----------------------------------------------------------------------------

function renderSummary(s) {
  state.summary = s;
  state.skew = s.now - Date.now() / 1000;
  const who = $('who');
  who.replaceChildren();
  if (s.user) who.append('Signed in as ', el('strong', { text: s.user }));
  else if (s.logins) who.append('Reading anonymously · ', el('a', { href: '/login', text: 'Sign in' }));
  else who.append('Open registry (no logins)');
  if (s.read_only) who.append(' ', el('span', { class: 'badge', text: 'read-only' }));

  const h = s.holdings, d = s.disk;
  const stat = (label, value, small) =>
    el('div', {}, el('dt', { text: label }), el('dd', {}, value, small ? el('small', { text: ' ' + small }) : null));
  $('stats').replaceChildren(
    stat('Repositories', String(h.repositories)),
    stat('Tags', String(h.tags), h.manifests + ' manifests'),
    stat('Stored', bytes(d.stored_bytes), h.blobs + ' blobs'),
    d.free_bytes == null && d.store.startsWith('s3://')
      ? stat('Object store', d.store.split(' at ')[0], 'at ' + d.store.split(' at ')[1])
      : stat('Free space', bytes(d.free_bytes), d.total_bytes ? 'of ' + bytes(d.total_bytes) : ''),
  );

  const gc = $('gc');
  gc.replaceChildren();
  if (!s.gc) gc.append('No collection since this server started ', when(s.started_at, ''), '.');
  else {
    const g = s.gc;
    gc.append(g.dry_run ? 'Last dry run ' : 'Last run ', when(g.at, 'earlier'), ': ',
      (g.dry_run ? 'would free ' : 'freed ') + bytes(g.freed_bytes) + ' (' + g.deleted_manifests +
      ' manifests, ' + g.deleted_blobs + ' blobs), kept ' + bytes(g.kept_bytes) + ', in ' +
      (g.elapsed_ms / 1000).toFixed(1) + ' s' + (g.errors ? ', ' + g.errors + ' problems (see the log)' : '') + '.');
  }

  const c = s.cache, box = $('cache');
  box.replaceChildren();
  if (!c.configured && !c.repositories) {
    box.append(el('p', { text: 'No upstream configured.' }));
  } else {
    const rate = c.hit_rate === null ? 'no lookups yet' : Math.round(c.hit_rate * 100) + '% hits';
    const held = bytes(c.bytes_cached) + (c.max_bytes ? ' of ' + bytes(c.max_bytes) : '') + ' cached';
    box.append(el('p', {}, rate + ' (' + c.hits + ' hits, ' + c.misses + ' misses) · ' + held +
      (c.fetching ? ' · ' + c.fetching + ' fetching' : '') + ' · next eviction: ',
      when(c.next_eviction, c.configured ? 'none scheduled' : 'none (no upstream configured)')));
    if (c.evictions) box.append(el('p', { class: 'sub', text: 'Evicted so far: ' + c.evictions + ' manifests, ' + bytes(c.evicted_bytes) + '.' }));
    box.append(el('table', {},
      el('caption', { class: 'vh', text: 'Upstreams' }),
      el('thead', {}, el('tr', {}, ['Upstream', 'Repositories', 'Cached'].map((t) => el('th', { scope: 'col', text: t })))),
      el('tbody', {}, c.upstreams.map((u) => el('tr', {},
        el('th', { scope: 'row' }, u.upstream,
          el('span', { class: 'sub', text: u.configured ? (u.default ? 'default · ' : '') + u.url : 'no longer configured' })),
        el('td', { text: String(u.repositories) }),
        el('td', { text: bytes(u.bytes) }))))));
  }
  $('foot').textContent = 'atoll ' + s.version + ' · API at /v2/';
}

// ---- repositories and tags -----------------------------------------------------------------

function pullLine(repo, tag) { return 'docker pull ' + location.host + '/' + repo + ':' + tag; }

async function copy(text, btn) {
  let ok = false;
  try {
    if (navigator.clipboard && window.isSecureContext) { await navigator.clipboard.writeText(text); ok = true; }
  } catch (_) { /* fall back below */ }
  if (!ok) {
    // Plain HTTP to a box's address is not a secure context: no clipboard API there.
    const ta = el('textarea', { readonly: true, class: 'vh' });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    try { ok = document.execCommand('copy'); } catch (_) { ok = false; }
    ta.remove();
    btn.focus();
  }
  say(ok ? 'Copied: ' + text : 'Copying failed: select the command and copy it.');
  btn.textContent = ok ? 'Copied' : 'Copy';
  setTimeout(() => { btn.textContent = 'Copy'; }, 1500);
}

async function remove(repo, t, rows) {
  const ref = repo + ':' + t.tag;
  const sure = window.confirm('Delete the tag ' + ref + '?\n\nThe tag goes at once; the image\'s data ' +
    'is freed by garbage collection when nothing else uses it.');
  if (!sure) return;
  try {
    const res = await fetch('/v2/' + repo + '/manifests/' + encodeURIComponent(t.tag),
      { method: 'DELETE', credentials: 'same-origin' });
    if (res.status !== 202) {
      let msg = res.status + ' ' + res.statusText;
      try { msg = (await res.json()).errors[0].message; } catch (_) { /* keep status */ }
      throw new Error(msg);
    }
    rows.forEach((r) => r.remove());
    say('Deleted ' + ref + '.');
    $('repos-h').focus();
  } catch (e) {
    say('Could not delete ' + ref + ': ' + e.message);
  }
}

function tagRows(repo, t, columns) {
  const line = pullLine(repo, t.tag);
  const kind = t.artifact_type ? artifactLabel(t.artifact_type) : (KINDS[t.media_type] || t.media_type);
  const copyBtn = el('button', { type: 'button', 'aria-label': 'Copy: ' + line, text: 'Copy' });
  copyBtn.addEventListener('click', () => copy(line, copyBtn));
  const row = el('tr', {},
    el('th', { scope: 'row', text: t.tag }),
    el('td', { 'data-label': 'Digest' }, el('code', { title: t.digest, text: t.digest.slice(0, 19) })),
    el('td', { 'data-label': 'Type' }, el('span', { title: t.media_type, text: kind }),
      t.platforms.length ? el('span', { class: 'sub', text: t.platforms.join(', ') }) : null),
    el('td', { 'data-label': 'Size', class: 'num', text: bytes(t.size) }),
    el('td', { 'data-label': 'Pushed', class: 'num' }, when(t.pushed_at, '—')),
    el('td', { 'data-label': 'Last pulled', class: 'num' }, when(t.pulled_at, 'never')),
    el('td', { 'data-label': 'Pull' }, el('div', { class: 'pull' },
      el('code', {}, 'docker pull ' + location.host + '/', el('wbr'), repo + ':' + t.tag), copyBtn)),
  );
  const rows = [row];
  if (t.referrers.length) {
    const more = t.referrer_count - t.referrers.length;
    rows.push(el('tr', { class: 'refs' }, el('td', { colspan: columns },
      el('ul', { 'aria-label': 'Referrers of ' + repo + ':' + t.tag },
        t.referrers.map((r) => el('li', {},
          el('strong', { text: artifactLabel(r.artifact_type || r.media_type) }), ' ',
          (r.artifact_type || r.media_type) + ' · ',
          el('code', { title: r.digest, text: r.digest.slice(0, 19) }),
          ' · ' + bytes(r.size) + ' · ', when(r.pushed_at, ''))),
        more > 0 ? el('li', { text: 'and ' + more + ' more' }) : null))));
  }
  if (state.summary && state.summary.can_delete) {
    const del = el('button', { type: 'button', class: 'danger', 'aria-label': 'Delete the tag ' + repo + ':' + t.tag, text: 'Delete' });
    del.addEventListener('click', () => remove(repo, t, rows));
    row.append(el('td', { 'data-label': 'Delete' }, del));
  }
  return rows;
}

function renderRepo(r, i) {
  const id = 'repo-' + state.seq + '-' + i;
  const canDelete = state.summary && state.summary.can_delete;
  const columns = canDelete ? 8 : 7;
  const meta = [r.tag_count + (r.tag_count === 1 ? ' tag' : ' tags'),
    r.upstream ? 'cached from ' + r.upstream : 'pushed here'];
  if (r.untagged) meta.push(r.untagged + ' untagged');
  const head = el('header', {}, el('h3', { id, text: r.name }),
    el('p', { class: 'meta' }, meta.join(' · '), r.updated_at ? ' · updated ' : '', r.updated_at ? when(r.updated_at, '') : null));
  const art = el('article', { class: 'repo', 'aria-labelledby': id }, head);
  if (!r.tags.length) {
    art.append(el('p', { text: 'No tags: only manifests pushed by digest.' }));
    return art;
  }
  const headers = [['Tag', 'c-tag'], ['Digest', 'c-digest'], ['Type', 'c-type'], ['Size', 'c-size'],
    ['Pushed', 'c-time'], ['Last pulled', 'c-time'], ['Pull command', 'c-pull']];
  if (canDelete) headers.push(['Delete', 'c-del']);
  const body = el('tbody', {}, r.tags.map((t) => tagRows(r.name, t, columns)));
  art.append(el('table', {}, el('caption', { class: 'vh', text: 'Tags of ' + r.name }),
    el('thead', {}, el('tr', {}, headers.map(([h, c]) => el('th', { scope: 'col', class: c, text: h })))), body));
  if (r.more_tags) {
    let last = r.tags[r.tags.length - 1].tag;
    const btn = el('button', { type: 'button', class: 'more-tags', text: 'Show more tags (' + r.tag_count + ' in all)' });
    btn.addEventListener('click', async () => {
      btn.disabled = true;
      try {
        const page = await api('/ui/api/tags?repo=' + encodeURIComponent(r.name) + '&last=' + encodeURIComponent(last));
        page.tags.forEach((t) => body.append(...tagRows(r.name, t, columns)));
        if (page.next) { last = page.next; btn.disabled = false; } else btn.remove();
        say('Showing ' + body.querySelectorAll('tr:not(.refs)').length + ' tags of ' + r.name + '.');
      } catch (e) { say(e.message); btn.disabled = false; }
    });
    art.append(btn);
  }
  return art;
}

async function loadRepos(q, append) {
  if (state.loading) state.loading.abort();
  const ctl = new AbortController();
  state.loading = ctl;
  const list = $('list');
  list.setAttribute('aria-busy', 'true');
  let url = '/ui/api/repos?q=' + encodeURIComponent(q);
  if (append && state.next) url += '&last=' + encodeURIComponent(state.next);
  try {
    const page = await api(url, ctl.signal);
    await state.summaryReady;
    if (state.loading !== ctl) return;
    state.seq++;
    const items = page.repositories.map(renderRepo);
    if (append) list.append(...items); else list.replaceChildren(...items);
    state.next = page.next;
    state.q = q;
    $('more').hidden = !page.next;
    const n = list.children.length, s = n === 1 ? '' : 's', more = page.next ? ' (more below)' : '';
    if (q) say(n ? n + ' repositor' + (n === 1 ? 'y matches' : 'ies match') + ' “' + q + '”' + more + '.' : 'No repository matches “' + q + '”.');
    else say(n ? n + ' repositor' + (s ? 'ies' : 'y') + more + '.' : 'The registry is empty: docker push ' + location.host + '/NAME:TAG to fill it.');
  } catch (e) {
    if (e.name === 'AbortError') return;
    say(e.message);
  } finally {
    if (state.loading === ctl) {
      state.loading = null;
      list.setAttribute('aria-busy', 'false');
      performance.mark('atoll-ready');
    }
  }
}

// ---- filter --------------------------------------------------------------------------------

function setFilter(q) {
  const url = q ? location.pathname + '?q=' + encodeURIComponent(q) : location.pathname;
  history.replaceState(null, '', url);
  loadRepos(q, false);
}

function start() {
  const input = $('q');
  const q = new URLSearchParams(location.search).get('q') || decodeURIComponent(location.hash.replace(/^#q=/, '')) || '';
  input.value = q.trim();
  let timer = 0;
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => setFilter(input.value.trim()), 150);
  });
  $('filter').addEventListener('submit', (e) => { e.preventDefault(); clearTimeout(timer); setFilter(input.value.trim()); });
  $('more').addEventListener('click', () => loadRepos(state.q, true));
  document.addEventListener('keydown', (e) => {
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
    if (e.key === '/' && !typing && !e.ctrlKey && !e.metaKey && !e.altKey) { e.preventDefault(); input.focus(); input.select(); }
  });
  // Both requests go out at once; the list waits for the summary, which says whether rows get
  // a Delete button.
  state.summaryReady = api('/ui/api/summary').then(renderSummary);
  loadRepos(input.value.trim(), false);
}

start();
