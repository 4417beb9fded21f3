// w3gate's page: connect a wallet, make a token (bound by default), see and manage your pins.
// The token lives in this tab's sessionStorage only; the server keeps nothing but the pins.

import { ApiFailure, type Filters, type PinStatus, Psa } from './pins';
import { type AuthParams, boundToken, describeToken, issuedAtOf, type Signer, type Token, w3authToken } from './tokens';
import { available, connect, type WalletKind } from './wallets';

const STORE = 'w3gate.token';
const STATUSES = ['queued', 'pinning', 'pinned', 'failed'];
const TTLS = [3600, 86400, 7 * 86400, 30 * 86400, 90 * 86400, 365 * 86400];

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => document.getElementById(id) as T;

let params: AuthParams | null = null;
// relative URLs: the page also works behind a proxy that serves w3gate under a path
const apiBase = new URL('psa', location.href).href; // the page's own requests: same origin
let psaUrl = apiBase; // the one Kubo is told about: the server's public_url when it says
let token: Token | null = null;
let signer: Signer | null = null; // the account last signed with (kept for a revocation)
let signers: Signer[] = [];
let filters: Filters = { statuses: [...STATUSES], name: '', cids: [], limit: 10 };
let cursors: (string | undefined)[] = []; // the `before` of each page shown so far (paging back)
let page: PinStatus[] = [];
let total = 0; // pins matching the filters (the first page's count)

export function duration(seconds: number): string {
  const units: [number, string][] = [[86400, 'day'], [3600, 'hour'], [60, 'minute'], [1, 'second']];
  for (const [size, name] of units) {
    if (seconds >= size && seconds % size === 0) {
      const n = seconds / size;
      return `${n} ${name}${n === 1 ? '' : 's'}`;
    }
  }
  return `${seconds} seconds`;
}

function say(id: string, text: string, error = false): void {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle('error', error);
}

function show(view: 'connect' | 'token' | 'pins'): void {
  for (const name of ['connect', 'token', 'pins']) {
    $(`view-${name}`).hidden = name !== view;
    document.querySelector(`nav button[data-view="${name}"]`)?.classList.toggle('active', name === view);
  }
  if (view === 'pins') void refresh();
}

// --- making a token -------------------------------------------------------------------------------

function boundChosen(): boolean {
  return !!params && ($<HTMLInputElement>('kind-bound')).checked;
}

function setUpKinds(): void {
  const ttl = $<HTMLSelectElement>('ttl');
  if (!params) {
    $<HTMLInputElement>('kind-w3auth').checked = true;
    $<HTMLInputElement>('kind-bound').disabled = true;
    say('kind-note', 'This server makes no bound tokens (it has no /auth/params): a plain W3Auth token it is.');
    ttl.closest('label')!.hidden = true;
    return;
  }
  const p = params;
  if (!p.w3auth) {
    $<HTMLInputElement>('kind-w3auth').disabled = true;
    say('kind-note', 'This server accepts bound tokens only.');
  }
  const choices = [...new Set([...TTLS.filter((s) => s <= p.max_ttl), p.default_ttl, p.max_ttl])].sort((a, b) => a - b);
  ttl.replaceChildren(...choices.map((s) => new Option(duration(s), String(s), false, s === p.default_ttl)));
  const sync = () => { ttl.disabled = !boundChosen(); };
  for (const id of ['kind-bound', 'kind-w3auth']) $(id).addEventListener('change', sync);
  sync();
}

async function makeToken(chosen: Signer): Promise<void> {
  say('connect-status', `Asking the wallet to sign for ${chosen.address}…`);
  try {
    token = boundChosen() && params
      ? await boundToken(params, chosen, Number($<HTMLSelectElement>('ttl').value))
      : await w3authToken(chosen);
  } catch (err) {
    say('connect-status', `Not signed: ${(err as Error).message}`, true);
    return;
  }
  signer = chosen;
  sessionStorage.setItem(STORE, JSON.stringify(token));
  say('connect-status', '');
  renderToken();
  show('token');
}

/** A token made elsewhere (`w3gate token`, another browser): used once the service accepts it, then kept
 *  exactly as a wallet-made one (this tab's sessionStorage only). */
async function usePastedToken(event: Event): Promise<void> {
  event.preventDefault();
  const text = $<HTMLInputElement>('paste-token').value.trim().replace(/^Bearer\s+/i, '');
  const pasted = describeToken(text);
  if (!pasted) {
    say('paste-status', 'This is not a token: expected a bound token (w3b1.…) or a base64 W3Auth token.', true);
    return;
  }
  say('paste-status', 'Checking the token with the service…');
  try {
    await new Psa(apiBase, pasted.text).check();
  } catch (err) {
    say('paste-status', `The service refuses this token: ${(err as Error).message}`, true);
    return;
  }
  token = pasted;
  signer = null; // a revocation then needs a wallet, or `w3gate token --revoke`
  sessionStorage.setItem(STORE, JSON.stringify(token));
  $<HTMLFormElement>('paste-form').reset();
  say('paste-status', '');
  cursors = [];
  renderToken();
  show('token');
}

async function connectWallet(kind: WalletKind): Promise<void> {
  $('accounts').hidden = true;
  say('connect-status', 'Connecting…');
  try {
    signers = await connect(kind);
  } catch (err) {
    say('connect-status', (err as Error).message, true);
    return;
  }
  if (signers.length === 1) return makeToken(signers[0]);
  $<HTMLSelectElement>('account').replaceChildren(
    ...signers.map((s, i) => new Option(s.label ?? s.address, String(i))));
  $('accounts').hidden = false;
  say('connect-status', 'Choose the account to sign with.');
}

function renderToken(): void {
  const has = !!token;
  $('token-none').hidden = has;
  $('token-box').hidden = !has;
  document.querySelectorAll<HTMLButtonElement>('nav button[data-view="pins"]').forEach((b) => { b.disabled = !has; });
  if (!token) return;
  $('token').textContent = token.text;
  $('kubo').textContent = `ipfs pin remote service add w3gate ${psaUrl} ${token.text}`;
  const who = `${token.chain} account ${token.address}`;
  if (token.kind === 'bound' && token.expiresAt && token.issuedAt) {
    const seconds = Math.round((Date.parse(token.expiresAt) - Date.parse(token.issuedAt)) / 1000);
    say('token-summary', `A bound token for ${who}: it works on this service only and lasts ${duration(seconds)}, `
      + `until ${new Date(token.expiresAt).toLocaleString()}.`);
  } else {
    say('token-summary', `A plain W3Auth token for ${who}: it never expires, and every W3Auth service accepts it.`);
  }
}

async function revokeAll(): Promise<void> {
  if (!params) return;
  const ttl = Number($<HTMLSelectElement>('ttl').value) || params.default_ttl;
  let proof = token;
  const issued = token ? issuedAtOf(token.text) : null;
  if (!issued || Date.now() - issued.getTime() > 9 * 60 * 1000) {
    // the server wants a bound token issued in the last 10 minutes: sign one
    if (!signer) {
      say('revoke-status', 'Connect your wallet again (Connect) to sign the revocation.', true);
      return;
    }
    say('revoke-status', 'Asking the wallet to sign the revocation…');
    try {
      proof = await boundToken(params, signer, ttl);
    } catch (err) {
      say('revoke-status', `Not signed: ${(err as Error).message}`, true);
      return;
    }
  }
  const response = await fetch('auth/revoke', { method: 'POST', headers: { Authorization: `Bearer ${proof!.text}` } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    say('revoke-status', `Not revoked: ${body.error?.details ?? response.statusText}`, true);
    return;
  }
  // every token issued before revoked_before is refused, the one that revoked included: the new token is
  // signed now and dated from revoked_before (up to a minute ahead: the server accepts that much clock skew)
  const from = new Date(body.revoked_before);
  const refusedNote = `Every token issued before ${from.toLocaleString()} is refused from now on`;
  token = null;
  sessionStorage.removeItem(STORE);
  if (signer) {
    say('revoke-status', `${refusedNote}. Asking the wallet to sign a new token…`);
    try {
      token = await boundToken(params, signer, ttl, new Date(Math.max(Date.now(), from.getTime())));
      sessionStorage.setItem(STORE, JSON.stringify(token));
    } catch (err) {
      say('revoke-status', `${refusedNote}; the new token was not signed: ${(err as Error).message}`, true);
    }
  }
  renderToken();
  if (token) say('revoke-status', `${refusedNote}; the token above is the new one.`);
  else if (!signer) say('revoke-status', `${refusedNote}: connect your wallet again (Connect) to make a new token.`);
}

// --- my pins --------------------------------------------------------------------------------------

function readFilters(): Filters {
  const when = (id: string) => {
    const value = $<HTMLInputElement>(id).value;
    return value ? new Date(value).toISOString() : undefined;
  };
  return {
    statuses: STATUSES.filter((s) => $<HTMLInputElement>(`status-${s}`).checked),
    name: $<HTMLInputElement>('filter-name').value.trim(),
    cids: $<HTMLInputElement>('filter-cid').value.split(/[\s,]+/).filter(Boolean),
    after: when('filter-after'),
    before: when('filter-before'),
    limit: Number($<HTMLSelectElement>('filter-limit').value),
  };
}

function cell(text: string, className = ''): HTMLTableCellElement {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

/** A DAG size as the node measured it (``info.dag_size``, bytes as a string), in decimal units. */
function size(bytes: string | undefined): string {
  if (bytes === undefined || !/^\d+$/.test(bytes)) return '–';
  let n = Number(bytes);
  for (const unit of ['B', 'kB', 'MB', 'GB']) {
    if (n < 1000) return unit === 'B' ? `${n} B` : `${n.toFixed(1)} ${unit}`;
    n /= 1000;
  }
  return `${n.toFixed(1)} TB`;
}

function row(p: PinStatus): HTMLTableRowElement {
  const tr = document.createElement('tr');
  tr.dataset.requestid = p.requestid;
  const status = cell(p.status, `status ${p.status}`);
  if (p.info?.status_details) {  // where the pin is: fetching, waiting for providers, replicas n of m, an error
    const details = document.createElement('small');
    details.className = 'details';
    details.textContent = p.info.status_details;
    status.append(details);
  }
  const remove = document.createElement('button');
  remove.textContent = 'Remove';
  remove.className = 'remove';
  remove.addEventListener('click', () => void removePin(p.requestid));
  const actions = document.createElement('td');
  actions.append(remove);
  tr.append(status, cell(p.pin.name ?? ''), cell(p.pin.cid, 'cid'), cell(size(p.info?.dag_size), 'size'),
    cell(p.info?.replicas ?? '–'),
    cell(p.info?.expires_at ? `block ${p.info.expires_at}` : '–'), cell(new Date(p.created).toLocaleString()), actions);
  return tr;
}

async function refresh(): Promise<void> {
  if (!token) return;
  const cursor = cursors[cursors.length - 1];
  try {
    const { count, results } = await new Psa(apiBase, token.text).list(filters, cursor);
    page = results;
    $('pins-body').replaceChildren(...results.map(row));
    if (!cursors.length) total = count; // a later page's count is of the pins older than its cursor
    const start = total - count + 1;
    say('pins-status', count === 0 ? 'No pins match.'
      : `Showing ${start}–${start + results.length - 1} of ${total} pin${total === 1 ? '' : 's'}.`);
    $<HTMLButtonElement>('newer').disabled = cursors.length === 0;
    $<HTMLButtonElement>('older').disabled = results.length < filters.limit || count <= results.length;
  } catch (err) {
    say('pins-status', (err as Error).message, true);
    if (err instanceof ApiFailure && err.status === 401) say('pins-status', `${err.message}: make a new token.`, true);
  }
}

async function addPin(event: Event): Promise<void> {
  event.preventDefault();
  if (!token) return;
  try {
    const st = await new Psa(apiBase, token.text).add($<HTMLInputElement>('add-cid').value.trim(),
      $<HTMLInputElement>('add-name').value.trim());
    say('add-status', `Added ${st.pin.cid}: ${st.status}.`);
    $<HTMLFormElement>('add-form').reset();
    cursors = [];
    await refresh();
  } catch (err) {
    say('add-status', (err as Error).message, true);
  }
}

async function removePin(requestid: string): Promise<void> {
  if (!token) return;
  try {
    await new Psa(apiBase, token.text).remove(requestid);
    say('add-status', `Removed ${requestid}.`);
    await refresh();
  } catch (err) {
    say('add-status', (err as Error).message, true);
  }
}

// --- wiring ---------------------------------------------------------------------------------------

async function copy(id: string, status: string): Promise<void> {
  const text = $(id).textContent ?? '';
  try {
    await navigator.clipboard.writeText(text);
    say(status, 'Copied.');
  } catch {
    getSelection()?.selectAllChildren($(id));
    say(status, 'Selected: press Ctrl+C to copy.');
  }
}

async function main(): Promise<void> {
  const response = await fetch('auth/params').catch(() => null);
  if (response?.ok) {
    params = (await response.json()) as AuthParams;
    psaUrl = params.psa;
  }
  $('service').textContent = psaUrl;
  // the service's root URL, as `w3gate token --url` wants it (the public_url it says, else this page's)
  $('cli').textContent = `w3gate token --chain CHAIN --url ${params?.uri ?? new URL('.', location.href).href.replace(/\/$/, '')}`;
  setUpKinds();
  for (const kind of ['polkadot', 'ethereum', 'solana'] as WalletKind[]) {
    const button = $<HTMLButtonElement>(`wallet-${kind}`);
    button.addEventListener('click', () => void connectWallet(kind));
    if (!available(kind)) button.title = 'not found in this browser';
  }
  $('sign').addEventListener('click', () => void makeToken(signers[Number($<HTMLSelectElement>('account').value)]));
  document.querySelectorAll<HTMLButtonElement>('nav button').forEach((b) =>
    b.addEventListener('click', () => show(b.dataset.view as 'connect' | 'token' | 'pins')));
  document.querySelectorAll<HTMLButtonElement>('button[data-copy]').forEach((b) =>
    b.addEventListener('click', () => void copy(b.dataset.copy!, b.dataset.status ?? 'copy-status')));
  $('paste-form').addEventListener('submit', (e) => void usePastedToken(e));
  $('forget').addEventListener('click', () => {
    token = null;
    sessionStorage.removeItem(STORE);
    renderToken();
    show('connect');
  });
  $<HTMLButtonElement>('revoke').disabled = !params;
  if (!params) say('revoke-status', 'This server has no revocation (no /auth endpoints).');
  $('revoke').addEventListener('click', () => void revokeAll());
  $('add-form').addEventListener('submit', (e) => void addPin(e));
  $('filters').addEventListener('submit', (e) => {
    e.preventDefault();
    filters = readFilters();
    cursors = [];
    void refresh();
  });
  $('older').addEventListener('click', () => {
    cursors.push(page[page.length - 1]?.created);
    void refresh();
  });
  $('newer').addEventListener('click', () => {
    cursors.pop();
    void refresh();
  });
  const saved = sessionStorage.getItem(STORE);
  token = saved ? (JSON.parse(saved) as Token) : null;
  renderToken();
  show(token ? 'token' : 'connect');
  document.body.dataset.ready = 'true'; // for tests and screenshots: the page is wired
}

void main();
