import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "@fontsource/noto-sans-hebrew/400.css";
import "@fontsource/noto-sans-hebrew/700.css";
import "katex/dist/katex.min.css";
import "./style.css";
import { ApiError, getJson, send, setCsrf, whenSignedOut, type User } from "./api";
import { Chat } from "./chat";
import { EmailWorkbench } from "./email";
import { Admin } from "./admin";
import { t } from "./i18n";

type Me = { user: User; csrf_token: string };

function SignIn({ onDone }: { onDone: (me: Me) => void }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  async function submit(e: Event) {
    e.preventDefault();
    try {
      onDone(await send<Me>("POST", "/api/auth/login", { username, password }));
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? t("badLogin") : (err as Error).message);
    }
  }
  return (
    <form class="signin" onSubmit={submit} aria-label={t("signIn")}>
      <h1>PLG-AI</h1>
      <input aria-label={t("username")} placeholder={t("username")} autocomplete="username" value={username} onInput={(e) => setUsername((e.target as HTMLInputElement).value)} />
      <input aria-label={t("password")} placeholder={t("password")} type="password" autocomplete="current-password" value={password} onInput={(e) => setPassword((e.target as HTMLInputElement).value)} />
      {error ? <p class="mark" role="alert">{error}</p> : null}
      <button type="submit" class="primary">{t("signIn")}</button>
    </form>
  );
}

function App() {
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const [route, setRoute] = useState(location.hash);
  const [dark, setDark] = useState(() => localStorage.getItem("theme") === "dark" || (!localStorage.getItem("theme") && matchMedia("(prefers-color-scheme: dark)").matches));

  useEffect(() => {
    whenSignedOut(() => setMe(null)); // the hash (where the person was) is kept for after
    getJson<Me>("/api/auth/me").then(setMe, () => setMe(null));
    const onHash = () => setRoute(location.hash);
    addEventListener("hashchange", onHash);
    return () => removeEventListener("hashchange", onHash);
  }, []);
  useEffect(() => { if (me) setCsrf(me.csrf_token); }, [me]);
  useEffect(() => { document.documentElement.dataset.theme = dark ? "dark" : "light"; localStorage.setItem("theme", dark ? "dark" : "light"); }, [dark]);

  // The browser tests read this mark: the first screen a person can use is on the page.
  useEffect(() => { if (me !== undefined) requestAnimationFrame(() => performance.mark("interactive")); }, [me === undefined]);
  if (me === undefined) return null;
  if (me === null) return <SignIn onDone={setMe} />;
  const page = route.startsWith("#/email") ? "email" : route.startsWith("#/admin") ? "admin" : "chat";
  return (
    <div class="shell">
      <header>
        <nav aria-label="ניווט">
          <a href="#/" aria-current={page === "chat" ? "page" : undefined}>{t("chat")}</a>
          <a href="#/email" aria-current={page === "email" ? "page" : undefined}>{t("email")}</a>
          {me.user.role === "admin" ? <a href="#/admin" aria-current={page === "admin" ? "page" : undefined}>{t("admin")}</a> : null}
        </nav>
        <span class="who" dir="auto">{me.user.display_name || me.user.username}</span>
        <button type="button" aria-label={t("theme")} onClick={() => setDark(!dark)}>{dark ? "☀" : "☾"}</button>
        <button type="button" onClick={() => void send("POST", "/api/auth/logout").finally(() => setMe(null))}>{t("signOut")}</button>
      </header>
      <main>{page === "email" ? <EmailWorkbench /> : page === "admin" ? <Admin /> : <Chat />}</main>
    </div>
  );
}

render(<App />, document.getElementById("app")!);
