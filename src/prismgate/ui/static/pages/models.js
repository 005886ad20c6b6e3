export async function render(main) { main.append('This page is being built.'); }
