// A minimal RFC 6455 client for Node 20 (which has no global WebSocket), test-only: text
// frames out (masked), text, ping and close frames in; the shape of the browser WebSocket
// that the MediaBar uses (readyState, on* handlers, send, close).

import { request } from 'node:http';
import { randomBytes, createHash } from 'node:crypto';
import type { Socket } from 'node:net';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export class NodeWebSocket {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  /** Every text frame any instance received, raw, for checks against the contract. */
  static readonly received: string[] = [];

  readyState = NodeWebSocket.CONNECTING;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;

  private socket: Socket | undefined;
  private buffer = Buffer.alloc(0);
  private fragments: Buffer[] = [];
  private closeCode = 1006;
  private closeReason = '';

  constructor(url: string) {
    const target = new URL(url);
    const key = randomBytes(16).toString('base64');
    const req = request({
      host: target.hostname,
      port: target.port,
      path: target.pathname + target.search,
      headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': key },
    });
    req.on('upgrade', (res, socket, head) => {
      const accept = createHash('sha1').update(key + GUID).digest('base64');
      if (res.headers['sec-websocket-accept'] !== accept) {
        socket.destroy();
        this.finish();
        return;
      }
      this.socket = socket;
      socket.setNoDelay(true);
      socket.on('data', (chunk: Buffer) => this.read(chunk));
      socket.on('close', () => this.finish());
      socket.on('error', () => undefined);
      this.readyState = NodeWebSocket.OPEN;
      this.onopen?.({});
      if (head.length > 0) this.read(head);
    });
    req.on('response', (res) => {
      res.resume();
      this.finish();
    });
    req.on('error', (error) => {
      this.onerror?.(error);
      this.finish();
    });
    req.end();
  }

  send(text: string): void {
    if (this.readyState !== NodeWebSocket.OPEN) throw new Error('not open');
    this.write(0x1, Buffer.from(text, 'utf8'));
  }

  close(code = 1000, reason = ''): void {
    if (this.readyState >= NodeWebSocket.CLOSING) return;
    if (this.readyState === NodeWebSocket.OPEN) {
      const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
      payload.writeUInt16BE(code, 0);
      payload.write(reason, 2);
      this.write(0x8, payload);
    }
    this.readyState = NodeWebSocket.CLOSING;
    this.closeCode = code;
    this.closeReason = reason;
    this.socket?.end();
    setTimeout(() => this.socket?.destroy(), 1000).unref();
  }

  private write(opcode: number, payload: Buffer): void {
    const mask = randomBytes(4);
    const length = payload.length;
    const header = length < 126 ? Buffer.alloc(2) : length < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    if (length < 126) header[1] = 0x80 | length;
    else if (length < 65536) {
      header[1] = 0x80 | 126;
      header.writeUInt16BE(length, 2);
    } else {
      header[1] = 0x80 | 127;
      header.writeBigUInt64BE(BigInt(length), 2);
    }
    const masked = Buffer.alloc(length);
    for (let i = 0; i < length; i += 1) masked[i] = payload[i]! ^ mask[i % 4]!;
    this.socket?.write(Buffer.concat([header, mask, masked]));
  }

  private read(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      if (this.buffer.length < 2) return;
      const first = this.buffer[0]!;
      const second = this.buffer[1]!;
      let length = second & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (this.buffer.length < 4) return;
        length = this.buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (this.buffer.length < 10) return;
        length = Number(this.buffer.readBigUInt64BE(2));
        offset = 10;
      }
      if (second & 0x80) offset += 4; // servers do not mask; skip a mask if one came
      if (this.buffer.length < offset + length) return;
      const payload = this.buffer.subarray(offset, offset + length);
      this.buffer = this.buffer.subarray(offset + length);
      this.frame(first & 0x80, first & 0x0f, Buffer.from(payload));
    }
  }

  private frame(fin: number, opcode: number, payload: Buffer): void {
    switch (opcode) {
      case 0x0:
      case 0x1:
      case 0x2:
        this.fragments.push(payload);
        if (fin) {
          const text = Buffer.concat(this.fragments).toString('utf8');
          this.fragments = [];
          NodeWebSocket.received.push(text);
          this.onmessage?.({ data: text });
        }
        break;
      case 0x8:
        this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        this.closeReason = payload.subarray(2).toString('utf8');
        if (this.readyState === NodeWebSocket.OPEN) this.write(0x8, payload.subarray(0, 2));
        this.readyState = NodeWebSocket.CLOSING;
        this.socket?.end();
        break;
      case 0x9:
        this.write(0xa, payload);
        break;
      default:
        break;
    }
  }

  private finish(): void {
    if (this.readyState === NodeWebSocket.CLOSED) return;
    this.readyState = NodeWebSocket.CLOSED;
    this.onclose?.({ code: this.closeCode, reason: this.closeReason });
  }
}
