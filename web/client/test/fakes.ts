// Test doubles: a fake clock (time moves only when a test says so), fake WebSockets the test
// plays the server on, a fake fetch and a fake browser environment.
import type { Clock, EnvironmentLike, FetchLike, PamClientOptions, WebSocketConstructor, WebSocketLike } from '../src/index.js';
import { PamClient } from '../src/index.js';

/** Lets promise continuations (getToken, fetch) run. */
export const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

export class FakeClock implements Clock {
  time = 1_000_000;
  private nextId = 1;
  private timers = new Map<number, { at: number; fn: () => void }>();
  now = () => this.time;
  setTimeout = (fn: () => void, ms: number) => {
    const id = this.nextId++;
    this.timers.set(id, { at: this.time + Math.max(0, ms), fn });
    return id;
  };
  clearTimeout = (handle: unknown) => {
    this.timers.delete(handle as number);
  };
  /** Moves time forward by `ms`, running due timers in order (and the promises they start). */
  async advance(ms: number): Promise<void> {
    const end = this.time + ms;
    await settle();
    for (;;) {
      const due = [...this.timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.time = due[1].at;
      due[1].fn();
      await settle();
    }
    this.time = end;
    await settle();
  }
  /** Pending timer delays from now, ascending. */
  pending(): number[] {
    return [...this.timers.values()].map((t) => t.at - this.time).sort((a, b) => a - b);
  }
}

export class FakeSocket implements WebSocketLike {
  readyState = 0;
  sent: Array<Record<string, unknown>> = [];
  closedWith: { code?: number; reason?: string } | undefined;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  constructor(readonly url: string) {}
  send(data: string): void {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }
  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }
  /** Server side: the upgrade succeeded. */
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  /** Server side: sends one frame. */
  push(frame: Record<string, unknown>): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  /** Server side (or network): the socket closed with `code`. */
  drop(code: number, reason = ''): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  /** Frames the client sent of one type. */
  ofType(type: string): Array<Record<string, unknown>> {
    return this.sent.filter((f) => f.type === type);
  }
}

export function fakeSockets() {
  const sockets: FakeSocket[] = [];
  const Ctor = function (this: unknown, url: string) {
    const socket = new FakeSocket(url);
    sockets.push(socket);
    return socket;
  } as unknown as WebSocketConstructor;
  return { Ctor, sockets, last: () => sockets[sockets.length - 1]! };
}

export class FakeEnvironment implements EnvironmentLike {
  navigator = { onLine: true };
  document = {
    visibilityState: 'visible',
    listeners: new Map<string, Set<() => void>>(),
    addEventListener(type: string, fn: () => void) {
      if (!this.listeners.has(type)) this.listeners.set(type, new Set());
      this.listeners.get(type)!.add(fn);
    },
    removeEventListener(type: string, fn: () => void) {
      this.listeners.get(type)?.delete(fn);
    },
  };
  private listeners = new Map<string, Set<() => void>>();
  addEventListener(type: string, fn: () => void) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type)!.add(fn);
  }
  removeEventListener(type: string, fn: () => void) {
    this.listeners.get(type)?.delete(fn);
  }
  fire(type: string) {
    for (const fn of this.listeners.get(type) ?? []) fn();
    for (const fn of this.document.listeners.get(type) ?? []) fn();
  }
}

export interface FetchCall {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: Record<string, unknown>;
}

/** A fetch answering from `answer(call, n)`: [status, body]. */
export function fakeFetch(answer: (call: FetchCall, n: number) => [number, unknown]) {
  const calls: FetchCall[] = [];
  const fetch: FetchLike = async (url, init) => {
    const call = { method: init.method, url, headers: init.headers, body: JSON.parse(init.body ?? '{}') as Record<string, unknown> };
    calls.push(call);
    const [status, body] = answer(call, calls.length);
    return { status, ok: status >= 200 && status < 300, json: async () => body, text: async () => JSON.stringify(body) };
  };
  return { fetch, calls };
}

/** A client wired to fakes; tokens are `t1`, `t2`, … with the reasons recorded. */
export function harness(extra: Partial<PamClientOptions> = {}) {
  const clock = new FakeClock();
  const ws = fakeSockets();
  const tokens: string[] = [];
  let ids = 0;
  const events: Array<[string, unknown]> = [];
  const client = new PamClient({
    url: 'https://pam.test',
    getToken: (reason) => {
      tokens.push(reason);
      return `t${tokens.length}`;
    },
    WebSocket: ws.Ctor,
    clock,
    random: () => 0.5,
    environment: null,
    newId: () => `m${++ids}`,
    ...extra,
  });
  for (const name of ['state', 'connecting', 'live', 'reconnecting', 'resumed', 'resume_failed', 'chat_retry', 'stopped', 'rest_fallback', 'timer_expired', 'proactive_alert', 'server_error', 'online', 'offline'] as const) {
    client.on(name, (payload) => events.push([name, payload]));
  }
  const named = (name: string) => events.filter(([n]) => n === name).map(([, p]) => p as Record<string, unknown>);
  return { client, clock, ws, tokens, events, named };
}

/** Opens the latest socket and welcomes it on stream `streamId`. */
export function welcome(socket: FakeSocket, streamId = 's1', seq = 1, extra: Record<string, unknown> = {}) {
  socket.open();
  socket.push({ type: 'welcome', protocol: 'pam.v2', connection_id: `c-${streamId}`, stream_id: streamId, epoch: 'e1', heartbeat_ms: 25_000, resume_window_ms: 300_000, seq, ...extra });
}
