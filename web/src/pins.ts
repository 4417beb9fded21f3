// "My pins": the Pinning Service API with the token, nothing else.

export interface PinStatus {
  requestid: string;
  status: string;
  created: string;
  pin: { cid: string; name?: string | null };
  info?: Record<string, string>;
}

export interface Filters {
  statuses: string[];
  name: string;
  cids: string[];
  after?: string;
  before?: string;
  limit: number;
}

export class ApiFailure extends Error {
  constructor(public status: number, message: string) { super(message); }
}

export class Psa {
  constructor(private base: string, private token: string) {}

  private async call(path: string, init: RequestInit = {}): Promise<Response> {
    const response = await fetch(this.base + path, {
      ...init,
      headers: { Authorization: `Bearer ${this.token}`, ...(init.body ? { 'Content-Type': 'application/json' } : {}) },
    });
    if (!response.ok) {
      let details = response.statusText;
      try {
        const body = await response.json();
        details = `${body.error.reason}: ${body.error.details}`;
      } catch { /* not a Failure body */ }
      throw new ApiFailure(response.status, details);
    }
    return response;
  }

  /** Whether the service accepts the token: a GET of one pin (401 for a token it refuses). */
  async check(): Promise<void> {
    await this.call('/pins?limit=1');
  }

  /** One page; `cursor` (the previous page's last `created`) pages back in time as the spec's `before`. */
  async list(f: Filters, cursor?: string): Promise<{ count: number; results: PinStatus[] }> {
    const q = new URLSearchParams();
    // every status by default: without a funded ordering account nothing gets past queued
    q.set('status', (f.statuses.length ? f.statuses : ['queued', 'pinning', 'pinned', 'failed']).join(','));
    if (f.name) { q.set('name', f.name); q.set('match', 'ipartial'); }
    if (f.cids.length) q.set('cid', f.cids.join(','));
    if (f.after) q.set('after', f.after);
    const before = cursor ?? f.before;
    if (before) q.set('before', before);
    q.set('limit', String(f.limit));
    return (await this.call(`/pins?${q}`)).json();
  }

  async add(cid: string, name: string): Promise<PinStatus> {
    const body: Record<string, string> = { cid };
    if (name) body.name = name;
    return (await this.call('/pins', { method: 'POST', body: JSON.stringify(body) })).json();
  }

  async remove(requestid: string): Promise<void> {
    await this.call(`/pins/${encodeURIComponent(requestid)}`, { method: 'DELETE' });
  }
}
