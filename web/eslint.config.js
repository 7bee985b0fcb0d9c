import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(js.configs.recommended, ...tseslint.configs.recommended, {
  rules: { "no-restricted-syntax": ["error", { selector: "Literal[value=/^https?:\\/\\//]", message: "the app talks to its own origin only" }] },
});
