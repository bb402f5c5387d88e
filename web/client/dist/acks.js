//! Proof of receipt (v2): the client tells the server how far it holds the stream with
//! `{"type":"ack","seq":n}`, so a push (`timer_expired`, `proactive_alert`) counts as delivered
//! soon after it arrived; and the pushes the app saw, remembered by id, so one re-sent on another
//! socket (a reconnect, a resume, a second tab's re-delivery) reaches the app once.
/** @internal At most one ack per this many milliseconds … */
export const ACK_EVERY_MS = 2_000;
/** @internal … unless this many frames arrived since the last one. */
export const ACK_EVERY_FRAMES = 64;
/** @internal How many push ids the client remembers (the least recently seen is forgotten first). */
export const PUSH_IDS_REMEMBERED = 512;
/**
 * Frames that make an ack due: every v2 server frame the server keeps for a replay. The others
 * (`welcome`, `ping`, `pong`, `resumed`, `resume_failed`) move the held position but ask for no
 * ack of their own: a ping is answered by its pong (itself a proof of receipt), and the others
 * open a socket or end a resume, whose position the server already knows.
 */
function makesAckDue(type) {
    return type !== 'welcome' && type !== 'ping' && type !== 'pong' && type !== 'resumed' && type !== 'resume_failed';
}
/**
 * @internal The ack bookkeeping of the current v2 socket.
 *
 * The position acked is the highest seq up to which the socket delivered every frame: set by
 * `welcome` (a fresh stream), `resumed` (the replay filled everything up to it) or
 * `resume_failed` (the fresh stream goes on), then moved by each next frame (`seq` = position + 1);
 * frames before the resume outcome and frames after a gap never move it (the client cannot
 * show it holds what it does not).
 *
 * Sending: an ack is due when a frame that makes one due arrived since the last ack. It goes out
 * once {@link ACK_EVERY_FRAMES} such frames arrived, or else {@link ACK_EVERY_MS} after the
 * previous ack (at once, on the next timer turn, when that is past) — so never more than one per
 * 64 frames or per 2 s, and a push is acked within 2 s. Nothing is sent while a resume is
 * unanswered, for a position already acked, or once the socket is gone (`reset`).
 */
export class Acks {
    clock;
    sendAck;
    gen = -1;
    /** The held position on socket `gen`; -1 while there is none (no welcome yet, resuming, reset). */
    held = -1;
    /** A frame skipped a seq: this socket's position stays where it was. */
    gapped = false;
    /** The last position acked on socket `gen`. */
    acked = -1;
    /** Frames that make an ack due, since the last ack. */
    due = 0;
    lastAckAt = -Infinity;
    timer;
    constructor(clock, sendAck) {
        this.clock = clock;
        this.sendAck = sendAck;
    }
    /** Socket `gen` was welcomed and is resuming: no position until the outcome. */
    resuming(gen) {
        this.forSocket(gen);
        this.held = -1;
    }
    /** Socket `gen` holds every frame of its stream up to `seq` (`welcome`, `resumed`, `resume_failed`). */
    settled(gen, seq) {
        this.forSocket(gen);
        this.held = seq;
        this.gapped = false;
        this.schedule();
    }
    /** A frame with `seq` arrived on socket `gen`. */
    frame(gen, type, seq) {
        if (gen !== this.gen)
            return;
        if (this.held >= 0) {
            if (seq <= this.held)
                return; // Not new.
            if (this.gapped || seq !== this.held + 1) {
                this.gapped = true;
                return;
            }
            this.held = seq;
        }
        if (!makesAckDue(type))
            return;
        this.due++;
        this.schedule();
    }
    /** The socket is gone (closed, dropped, the client closed): no ack is sent for it any more. */
    reset() {
        this.clock.clearTimeout(this.timer);
        this.timer = undefined;
        this.gen = -1;
        this.held = -1;
        this.gapped = false;
        this.acked = -1;
        this.due = 0;
    }
    forSocket(gen) {
        if (gen === this.gen)
            return;
        this.reset();
        this.gen = gen;
    }
    schedule() {
        if (this.due === 0 || this.held <= this.acked)
            return;
        if (this.due >= ACK_EVERY_FRAMES)
            return this.send();
        if (this.timer !== undefined)
            return;
        const gen = this.gen;
        const wait = Math.max(0, this.lastAckAt + ACK_EVERY_MS - this.clock.now());
        this.timer = this.clock.setTimeout(() => {
            this.timer = undefined;
            if (gen === this.gen)
                this.send();
        }, wait);
    }
    send() {
        this.clock.clearTimeout(this.timer);
        this.timer = undefined;
        if (this.held <= this.acked)
            return;
        this.acked = this.held;
        this.due = 0;
        this.lastAckAt = this.clock.now();
        this.sendAck(this.held);
    }
}
/**
 * @internal The ids of the pushes the app was given, the least recently seen forgotten first
 * beyond `max`. `firstTime(key)` is true once per remembered key.
 */
export class RecentIds {
    max;
    keys = new Set();
    constructor(max = PUSH_IDS_REMEMBERED) {
        this.max = max;
    }
    /** Whether `key` is remembered (without refreshing it). */
    has(key) {
        return this.keys.has(key);
    }
    firstTime(key) {
        const seen = this.keys.delete(key);
        this.keys.add(key);
        if (this.keys.size > this.max)
            this.keys.delete(this.keys.values().next().value);
        return !seen;
    }
}
