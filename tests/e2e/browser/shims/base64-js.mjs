// ES module stand-in for the CommonJS `base64-js` package (the SDK's ESM build
// imports only `fromByteArray`), for the import map in ../index.html.
export function fromByteArray(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}
