// Model output is untrusted: markdown-it with html:false escapes every tag, links are
// checked (http(s)/mailto only; javascript: and data: become plain text) and open with
// rel="noopener noreferrer"; images are not loaded (they would reach other hosts).
import MarkdownIt from "markdown-it";
type PluginSimple = (md: InstanceType<typeof MarkdownIt>) => void;
import katex from "katex";
import hljs from "highlight.js/lib/common";

const SAFE_LINK = /^(https?:|mailto:|#)/i;

const math: PluginSimple = (md) => {
  md.inline.ruler.after("escape", "math", (state, silent) => {
    const src = state.src;
    const start = state.pos;
    if (src[start] !== "$") return false;
    const display = src[start + 1] === "$";
    const open = display ? 2 : 1;
    const end = src.indexOf(display ? "$$" : "$", start + open);
    if (end < 0 || end === start + open) return false;
    if (!silent) {
      const token = state.push("math", "", 0);
      token.content = src.slice(start + open, end);
      token.markup = display ? "$$" : "$";
    }
    state.pos = end + open;
    return true;
  });
  md.renderer.rules.math = (tokens, idx) => {
    const token = tokens[idx];
    return katex.renderToString(token.content, {
      displayMode: token.markup === "$$",
      throwOnError: false,
      trust: false,
    });
  };
};

const md = new MarkdownIt({
  html: false,
  linkify: true,
  breaks: true,
  highlight(code, lang) {
    const html = lang && hljs.getLanguage(lang)
      ? hljs.highlight(code, { language: lang, ignoreIllegals: true }).value
      : hljs.highlightAuto(code).value;
    return `<pre class="hljs" dir="ltr"><code>${html}</code></pre>`;
  },
}).use(math);

md.validateLink = (url) => SAFE_LINK.test(url.trim());
md.renderer.rules.image = (tokens, idx) => md.utils.escapeHtml(tokens[idx].content || "[image]");
const defaultLinkOpen =
  md.renderer.rules.link_open ?? ((tokens, idx, options, _env, self) => self.renderToken(tokens, idx, options));
md.renderer.rules.link_open = (tokens, idx, options, env, self) => {
  tokens[idx].attrSet("rel", "noopener noreferrer");
  tokens[idx].attrSet("target", "_blank");
  return defaultLinkOpen(tokens, idx, options, env, self);
};
// Every block reads in its own direction (Hebrew paragraph, English paragraph, code).
for (const rule of ["paragraph_open", "heading_open", "bullet_list_open", "ordered_list_open", "blockquote_open", "table_open"]) {
  md.renderer.rules[rule] = (tokens, idx, options, _env, self) => {
    tokens[idx].attrSet("dir", "auto");
    return self.renderToken(tokens, idx, options);
  };
}

export function render(text: string): string {
  return md.render(text);
}
