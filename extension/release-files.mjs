// Before `vsce package` (vscode:prepublish): the project's LICENSE and
// CHANGELOG.md into the extension, so the .vsix carries them. One release
// covers the wheel, the Supabase bundle and the extension (CONTRIBUTING.md,
// "Releases"): one changelog, one license, copied, never edited here.
import { copyFileSync } from "node:fs";

for (const name of ["LICENSE", "CHANGELOG.md"]) {
  copyFileSync(new URL(`../${name}`, import.meta.url), new URL(name, import.meta.url));
}
