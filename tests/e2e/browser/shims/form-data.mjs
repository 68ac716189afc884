// The `form-data` package's browser entry is CommonJS for `self.FormData`; an
// ES module equivalent for the import map in ../index.html.
export default globalThis.FormData;
