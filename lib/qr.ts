import qrcode from "qrcode-generator";

/**
 * A ticket's QR code as an SVG document, drawn by `qrcode-generator` (pure JS, no canvas). Error
 * correction M (15% of the symbol may be damaged or covered), the smallest version that holds the code,
 * byte mode (a ticket code is base64url with one dot), a quiet zone of 4 modules as the standard asks,
 * 4 px per module.
 */
export function qrSvg(text: string): string {
  const qr = qrcode(0, "M");
  qr.addData(text, "Byte");
  qr.make();
  const svg = qr.createSvgTag({ cellSize: 4, margin: 16 });
  return `<?xml version="1.0" encoding="UTF-8"?>\n${svg}`;
}
