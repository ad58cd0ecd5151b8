extension Dashboard {
    /// The pages' only stylesheet (served at `/assets/dashboard.css`: the pages' Content-Security-Policy allows no
    /// inline style).
    static let stylesheet = """
        :root { --ink: #1d232b; --muted: #5b6673; --line: #d9dee4; --paper: #ffffff; --shade: #f4f6f8; --accent: #1f5fae;
          --ok: #1c7c3c; --bad: #b3261e; --wait: #8a5a00; font-family: system-ui, -apple-system, "Segoe UI", sans-serif; }
        * { box-sizing: border-box; }
        body { margin: 0; color: var(--ink); background: var(--shade); font-size: 15px; line-height: 1.45; }
        header { display: flex; justify-content: space-between; align-items: center; padding: 0 24px; background: #18212d; color: #fff; }
        header nav { display: flex; gap: 4px; align-items: center; }
        header a { color: #dfe7f1; text-decoration: none; padding: 14px 12px; display: inline-block; }
        header a[aria-current="page"] { color: #fff; box-shadow: inset 0 -3px 0 #6ea8ff; }
        header a.brand { font-weight: 700; color: #fff; padding-left: 0; margin-right: 12px; }
        .account { display: flex; gap: 12px; align-items: center; color: #dfe7f1; }
        main { max-width: 1280px; margin: 0 auto; padding: 20px 24px 48px; }
        h1 { font-size: 22px; margin: 8px 0 16px; } h2 { font-size: 18px; margin-top: 28px; } h3 { font-size: 15px; margin-top: 20px; }
        h1 code, h2 code { font-size: 0.8em; }
        a { color: var(--accent); }
        :focus-visible { outline: 3px solid #6ea8ff; outline-offset: 2px; }
        table { width: 100%; border-collapse: collapse; background: var(--paper); border: 1px solid var(--line); }
        th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
        thead th { background: var(--shade); font-weight: 600; font-size: 13px; color: var(--muted); }
        td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; }
        td { overflow-wrap: break-word; } td.error-text, td code { overflow-wrap: anywhere; }
        code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 13px; }
        pre.body { background: var(--paper); border: 1px solid var(--line); padding: 12px; white-space: pre-wrap; overflow-wrap: anywhere; max-height: 480px; overflow: auto; }
        pre.hex { white-space: pre; }
        .error-text { color: var(--bad); }
        .hint, .lead, .empty { color: var(--muted); }
        .error { color: var(--bad); background: #fdeceb; border: 1px solid #f3c1bd; padding: 8px 12px; }
        form.search { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-end; margin-bottom: 18px; }
        form.search div { display: flex; flex-direction: column; gap: 4px; }
        label { font-size: 13px; color: var(--muted); }
        input, select { font: inherit; padding: 6px 8px; border: 1px solid #b8c1cc; border-radius: 4px; min-width: 150px; background: #fff; }
        button { font: inherit; padding: 7px 16px; border: 1px solid var(--accent); background: var(--accent); color: #fff; border-radius: 4px; cursor: pointer; }
        a.button { display: inline-block; padding: 7px 16px; background: var(--accent); color: #fff; border-radius: 4px; text-decoration: none; }
        a.button.danger, button.danger { background: var(--bad); border-color: var(--bad); }
        .badge.purged { background: #ececec; color: var(--muted); }
        button.link { background: none; border: none; color: #dfe7f1; padding: 0; text-decoration: underline; }
        form.inline { display: inline; }
        dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 6px 18px; background: var(--paper); border: 1px solid var(--line); padding: 14px 18px; margin: 0 0 12px; }
        dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
        .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; background: #e8ecf1; color: var(--ink); white-space: nowrap; }
        .badge.succeeded, .badge.ack { background: #e3f4e8; color: var(--ok); }
        .badge.dead_lettered, .badge.dead-letter { background: #fbe4e2; color: var(--bad); }
        .nowrap { white-space: nowrap; }
        .badge.retrying, .badge.retry, .badge.running { background: #fdf1d8; color: var(--wait); }
        .badge.replayed { background: #e4ecfb; color: var(--accent); }
        .badge.active { background: #e3f4e8; color: var(--ok); }
        .badge.paused { background: #fdf1d8; color: var(--wait); }
        .pages { margin-top: 14px; }
        section.dead-letter { margin-bottom: 32px; }
        table.headers th { width: 30%; font-weight: 500; }
        .sign-in { max-width: 380px; margin-top: 10vh; background: var(--paper); border: 1px solid var(--line); padding: 24px 28px; }
        .sign-in form { display: flex; flex-direction: column; gap: 6px; } .sign-in button { margin-top: 12px; }
        .visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
        """
}
