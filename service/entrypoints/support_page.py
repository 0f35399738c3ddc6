"""The support page: one self-contained HTML document (inline CSS and script, no external
asset). It holds no data: its script asks the JSON API with the token kept in sessionStorage,
and builds every element with textContent (never innerHTML with data)."""

from __future__ import annotations

from service.entrypoints.support_script import SCRIPT

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f4f6f9; }
header { background: #1d2330; color: #fff; padding: 10px 18px; display: flex; gap: 18px;
  align-items: center; flex-wrap: wrap; }
header h1 { font-size: 16px; margin: 0 12px 0 0; }
input { padding: 4px 6px; border: 1px solid #9aa3b2; border-radius: 3px; }
button { padding: 4px 10px; border: 1px solid #3b5bdb; background: #3b5bdb; color: #fff;
  border-radius: 3px; cursor: pointer; }
main { padding: 14px 18px; display: grid; grid-template-columns: repeat(auto-fit,
  minmax(420px, 1fr)); gap: 14px; }
section { background: #fff; border: 1px solid #d5dae3; border-radius: 4px; padding: 10px 14px; }
section h2 { font-size: 14px; margin: 0 0 8px; color: #3b5bdb; }
table { border-collapse: collapse; width: 100%; }
td, th { text-align: left; vertical-align: top; padding: 2px 8px 2px 0;
  border-bottom: 1px solid #eef0f4; }
th { color: #5c6578; font-weight: 600; white-space: nowrap; }
.reason { color: #a61e4d; font-weight: 600; }
.muted { color: #7b8497; }
#message { margin: 10px 18px 0; }
#message.error { color: #c92a2a; font-weight: 600; }
#results button { margin: 4px 6px 0 0; background: #fff; color: #3b5bdb; }
svg .balance { fill: none; stroke: #3b5bdb; stroke-width: 2; }
svg .threshold { stroke: #e8590c; stroke-dasharray: 6 4; }
svg text { font-size: 11px; fill: #5c6578; }
svg .point { fill: #3b5bdb; }
"""

PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>auto-topup support</title>
<style>{STYLE}</style>
</head>
<body>
<header>
  <h1>auto-topup support (read-only)</h1>
  <form id="token-form">
    <label>Token <input id="token" type="password" autocomplete="off" size="24"></label>
    <button id="token-save" type="submit">Use token</button>
  </form>
  <form id="search-form">
    <label>Customer <input id="search" type="search" placeholder="customer id prefix"></label>
    <button id="search-go" type="submit">Search</button>
  </form>
</header>
<div id="message" class="muted">Enter the support token, then search a customer.</div>
<div id="results" style="margin: 0 18px"></div>
<main id="customer"></main>
<script>{SCRIPT}</script>
</body>
</html>
"""
