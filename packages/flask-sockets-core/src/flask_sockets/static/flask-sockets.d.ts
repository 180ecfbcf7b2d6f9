// Type declarations of flask-sockets.js, the browser client of Flask-Sockets'
// JSON envelope (docs/client.rst).

/** A place in a room's history: offset (monotonic per room) and epoch (changes when the history is lost). */
export interface Position {
  offset: number | null;
  epoch: string | null;
}

export interface SocketClientOptions {
  /** Subprotocols offered to the server (the WebSocket constructor's second argument). */
  protocols?: string | string[];
  /**
   * Reconnect delays in ms: random(0, min(max, min * 2 ** attempt)). Default {min: 500, max: 20000}.
   * Back online or shown again while waiting: random(0, min(max, 4 * min)), if sooner.
   */
  backoff?: { min?: number; max?: number };
  /** Ms a connection must stay open before the attempt count resets. Default 10000. */
  stable?: number;
  /** false: never declare a silent link dead. Default true (ping + grace, ping from the server's hello, 25 s until then). */
  heartbeat?: boolean;
  /** Ms of silence allowed beyond the server's ping interval. Default 5000. */
  grace?: number;
  /** How many send() calls are kept while not open (the rest are dropped). Default 100; 0: none. */
  queue?: number;
  /** The WebSocket class. Default globalThis.WebSocket. */
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocket;
}

/** A message published to a room, as handlers and "roommessage" get it. */
export interface RoomMessage<T = unknown> {
  room: string;
  data: T;
  offset: number | null;
  epoch: string | null;
}

/** The server's answer to a (re)subscribe. */
export interface Subscribed extends Position {
  room: string;
  recovered: boolean;
}

export interface SocketClientEvents {
  open: Record<string, never>;
  /** willRetry: a reconnect is scheduled in `delay` ms. An attempt whose URL function or WebSocket constructor threw: 1006. */
  close: { code: number; reason: string; willRetry: boolean; delay?: number };
  /** An application message for this client (a "msg" frame with no room, or a frame that is no envelope). */
  message: { data: unknown };
  roommessage: RoomMessage;
  /** Every answer to a subscribe. */
  subscribed: Subscribed;
  /** Every message after the position sent follows, in order, with no gap. */
  recovered: Subscribed;
  /** Messages may have been missed: reload the room's state (offset/epoch: the room's position now). */
  unrecovered: Subscribed;
  /** Closed with 4401: call connect() again with new credentials. */
  unauthorized: { reason: string };
  /**
   * A refused subscribe ({room, reason}; the room is dropped), a WebSocket error ({event}), or what the URL
   * function or the WebSocket constructor threw ({error}; a failed attempt: "close" follows).
   */
  error: { room?: string; reason?: string; event?: Event; error?: unknown };
}

export interface Subscription<T = unknown> {
  readonly room: string;
  readonly handler?: (data: T, message: RoomMessage<T>) => void;
  /** The last position seen in the room. */
  readonly position: Position;
  /** Stop this handler; the last subscription of a room sends {"t":"unsub"}. */
  unsubscribe(): void;
}

export type SocketClientState = "closed" | "connecting" | "open" | "waiting";

export declare class SocketClient extends EventTarget {
  constructor(url: string | URL | (() => string | URL), options?: SocketClientOptions);
  readonly url: string | URL | (() => string | URL);
  readonly state: SocketClientState;
  /** Reconnect attempts since the last stable connection. */
  readonly attempt: number;
  /** Connect now; also after "unauthorized", a terminal close code or close(). */
  connect(): this;
  /** Close without reconnecting (other codes than 1000 and 3000-4999 are sent as 4000); empties the send queue. */
  close(code?: number, reason?: string): void;
  /** Send {"t":"msg","data":data}, or queue it while not open (or closing); false if the queue is full (dropped). */
  send(data: unknown): boolean;
  subscribe<T = unknown>(
    room: string,
    handler?: (data: T, message: RoomMessage<T>) => void,
    position?: Partial<Position>,
  ): Subscription<T>;
  /** fn(detail); returns the function that removes the listener. */
  on<K extends keyof SocketClientEvents>(type: K, fn: (detail: SocketClientEvents[K]) => void): () => void;
}
