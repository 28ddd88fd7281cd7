/** `/docs`: a self-contained page that renders /openapi.json (no third-party scripts). */
export const docsPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Breakwater API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:960px;padding:1.5rem;color:#1b1f24}
h1{margin-bottom:.2rem}.op{border:1px solid #d0d7de;border-radius:6px;margin:.6rem 0;padding:.5rem .8rem}
.m{display:inline-block;min-width:4.5rem;font-weight:700;text-transform:uppercase}
.get{color:#0969da}.post{color:#1a7f37}.patch,.put{color:#9a6700}.delete{color:#cf222e}
code,pre{font-family:ui-monospace,monospace;font-size:13px}pre{background:#f6f8fa;padding:.5rem;overflow:auto;max-height:24rem}
details summary{cursor:pointer}.tag{color:#57606a;font-size:13px}
</style></head><body>
<h1>Breakwater API</h1><p>Generated from <a href="/openapi.json">/openapi.json</a>. Errors are
<code>application/problem+json</code> with a stable <code>code</code>.</p><div id="ops">Loading…</div>
<script>
fetch('/openapi.json').then(r=>r.json()).then(doc=>{
  const out=document.getElementById('ops');out.textContent='';
  for(const [path,ops] of Object.entries(doc.paths)){for(const [method,op] of Object.entries(ops)){
    const d=document.createElement('details');d.className='op';
    const s=document.createElement('summary');
    s.innerHTML='<span class="m '+method+'"></span><code></code> <span class="tag"></span>';
    s.children[0].textContent=method;s.children[1].textContent=path;
    s.children[2].textContent='— '+op.summary+(op['x-roles']?' · roles: '+op['x-roles'].join(', '):'');
    d.appendChild(s);const pre=document.createElement('pre');pre.textContent=JSON.stringify(op,null,2);d.appendChild(pre);out.appendChild(d);
  }}
}).catch(e=>{document.getElementById('ops').textContent='Could not load the document: '+e});
</script></body></html>`;
