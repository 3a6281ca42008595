import zlib from 'node:zlib';

// node:zlib has had crc32 since 20.15; the table fallback keeps older 20.x working.
const native = (zlib as unknown as { crc32?: (d: Buffer) => number }).crc32;
let table: Uint32Array | undefined;

export function zlibCrc32(data: Buffer): number {
  if (native) return native(data) >>> 0;
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (const b of data) crc = table[(crc ^ b) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
