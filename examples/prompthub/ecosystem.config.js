// PromptHub's pm2 ecosystem file, as the seed checklist starts it (`pm2 start ecosystem.config.js`).
// `shipshape init examples/prompthub/ecosystem.config.js` turns it into an App document.
module.exports = {
  apps: [
    {
      name: 'prompthub',
      script: 'node_modules/next/dist/bin/next',
      args: 'start',
      cwd: '/root/prompthub',
      instances: 2,
      exec_mode: 'cluster',
      max_memory_restart: '800M',
      watch: false,
      env: { PORT: 3000, NODE_ENV: 'production' },
    },
  ],
};
