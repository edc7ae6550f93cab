module.exports = require('./build/Release/file_copy.node');
