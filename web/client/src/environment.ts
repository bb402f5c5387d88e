//! The browser's signals: `online`/`offline` on the window and `visibilitychange` on the
//! document, when those globals exist (never in Node).

import type { EnvironmentLike } from './types.js';

/** What the client does on each signal. */
export interface EnvironmentHandlers {
  online(): void;
  offline(): void;
  /** The page became visible again. */
  visible(): void;
}

/** The environment to watch: the given one, or `globalThis` when it has `addEventListener`. */
export function pickEnvironment(given: EnvironmentLike | null | undefined): EnvironmentLike | null {
  if (given !== undefined) return given;
  const g = globalThis as unknown as Partial<EnvironmentLike>;
  return typeof g.addEventListener === 'function' && typeof g.removeEventListener === 'function' ? (g as EnvironmentLike) : null;
}

/** Subscribes to the signals; returns the function that unsubscribes. */
export function watchEnvironment(env: EnvironmentLike, handlers: EnvironmentHandlers): () => void {
  const visible = () => {
    if (env.document?.visibilityState === 'visible') handlers.visible();
  };
  env.addEventListener('online', handlers.online);
  env.addEventListener('offline', handlers.offline);
  env.document?.addEventListener?.('visibilitychange', visible);
  return () => {
    env.removeEventListener('online', handlers.online);
    env.removeEventListener('offline', handlers.offline);
    env.document?.removeEventListener?.('visibilitychange', visible);
  };
}
